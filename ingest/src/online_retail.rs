//! The UCI Online Retail II data set as POS history: read by `kinfold import online-retail`
//! and by the profile benchmark, so both fold the same transactions.
//!
//! Mapping: an invoice is one till transaction (store `online`, till `web`, serial = invoice
//! number, UK local time, the invoice's earliest line's time); an invoice starting with `C` is
//! a return; `Customer ID` is the member card; rows without one are guest sales. Quantities
//! become positive units (the transaction kind gives the direction); prices are pence. Rows
//! that are not a sale or return line (bad debt adjustments `A...`, stock write-offs with
//! negative quantity on a sale invoice, a positive quantity on a return) are unmapped, each
//! with its line number and reason, for the dead-letter log.

use crate::error::{RejectCode, Rejection};
use kinfold_core::event::{PosLine, PosTransaction, PosTransactionKind};
use kinfold_core::money::parse_decimal_minor;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The brand the data set's member cards belong to.
pub const BRAND: &str = "online-retail-ii";

/// One invoice as a till transaction, with the CSV rows it came from.
#[derive(Debug, Clone)]
pub struct ImportedInvoice {
    /// The line of the file the invoice's first row is on.
    pub first_line: u64,
    pub transaction: PosTransaction,
    /// Its rows as CSV lines, quoted as the file quotes them.
    pub rows: Vec<String>,
}

/// A row that is not a sale or return line.
#[derive(Debug, Clone)]
pub struct UnmappedRow {
    pub line: u64,
    /// The row as a CSV line.
    pub row: String,
    pub rejection: Rejection,
}

/// A whole file, read.
#[derive(Debug, Default)]
pub struct OnlineRetail {
    /// Data rows read (the header is not one).
    pub rows: u64,
    /// In the order their first rows appear.
    pub invoices: Vec<ImportedInvoice>,
    pub unmapped: Vec<UnmappedRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("csv error near line {line}: {source}")]
    Csv { line: u64, source: csv::Error },
}

/// The file at `path`, un-gzipped on the fly when it ends in `.gz`.
pub fn open(path: &Path) -> Result<Box<dyn Read>, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Reads the file at `path` (see [`open`]) into invoices and unmapped rows.
pub fn read_path(path: &Path) -> Result<OnlineRetail, ReadError> {
    read(open(path)?)
}

struct Invoice {
    first_line: u64,
    kind: PosTransactionKind,
    invoice_date: chrono::NaiveDateTime,
    customer: Option<String>,
    lines: Vec<PosLine>,
    rows: Vec<String>,
}

/// Reads a whole CSV (with its header row) into invoices and unmapped rows.
pub fn read(source: impl Read) -> Result<OnlineRetail, ReadError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(source);
    let mut invoices: Vec<(String, Invoice)> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut read = OnlineRetail::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        let more = reader
            .read_record(&mut record)
            .map_err(|source| ReadError::Csv { line, source })?;
        if !more {
            break;
        }
        read.rows += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let row = csv_line(&record).map_err(|source| ReadError::Csv { line, source })?;
        match map_row(&record) {
            Ok(mapped) => {
                let index = *index_of.entry(mapped.invoice.clone()).or_insert_with(|| {
                    invoices.push((
                        mapped.invoice.clone(),
                        Invoice {
                            first_line: line,
                            kind: mapped.kind,
                            invoice_date: mapped.invoice_date,
                            customer: mapped.customer.clone(),
                            lines: Vec::new(),
                            rows: Vec::new(),
                        },
                    ));
                    invoices.len() - 1
                });
                let invoice = &mut invoices[index].1;
                // An invoice's lines can straddle a minute: its time is the earliest line's.
                invoice.invoice_date = invoice.invoice_date.min(mapped.invoice_date);
                invoice.lines.push(mapped.line);
                invoice.rows.push(row);
            }
            Err(rejection) => read.unmapped.push(UnmappedRow {
                line,
                row,
                rejection,
            }),
        }
    }
    read.invoices = invoices
        .into_iter()
        .map(|(serial, invoice)| ImportedInvoice {
            first_line: invoice.first_line,
            transaction: transaction(&serial, &invoice),
            rows: invoice.rows,
        })
        .collect();
    Ok(read)
}

/// One row mapped to a line of its invoice, or the reason it cannot be.
struct MappedRow {
    invoice: String,
    kind: PosTransactionKind,
    line: PosLine,
    invoice_date: chrono::NaiveDateTime,
    customer: Option<String>,
}

fn map_row(record: &csv::StringRecord) -> Result<MappedRow, Rejection> {
    let field = |index: usize| record.get(index).unwrap_or_default().trim();
    if record.len() < 8 {
        return Err(Rejection::new(
            RejectCode::MissingField,
            format!("{} columns, expected 8", record.len()),
        ));
    }
    let invoice = field(0);
    let (kind, number) = match invoice.strip_prefix('C') {
        Some(number) => (PosTransactionKind::Return, number),
        None => (PosTransactionKind::Sale, invoice),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::new(
            RejectCode::InvalidField,
            format!("invoice `{invoice}` is neither a sale nor a return (C) number"),
        ));
    }
    let quantity: i64 = field(3).parse().map_err(|_| {
        Rejection::new(
            RejectCode::InvalidField,
            format!("quantity `{}` is not an integer", field(3)),
        )
    })?;
    let unit_price_minor = parse_decimal_minor(field(5), 2).ok_or_else(|| {
        Rejection::new(
            RejectCode::InvalidField,
            format!("price `{}` is not a decimal", field(5)),
        )
    })?;
    if unit_price_minor < 0 {
        return Err(Rejection::new(
            RejectCode::InvalidAmount,
            format!("negative price {}", field(5)),
        ));
    }
    match kind {
        PosTransactionKind::Sale if quantity <= 0 => {
            return Err(Rejection::new(
                RejectCode::InvalidAmount,
                format!("quantity {quantity} on a sale invoice is a stock adjustment, not a sale"),
            ));
        }
        PosTransactionKind::Return if quantity >= 0 => {
            return Err(Rejection::new(
                RejectCode::InvalidAmount,
                format!("quantity {quantity} on a return invoice returns nothing"),
            ));
        }
        _ => {}
    }
    let invoice_date = chrono::NaiveDateTime::parse_from_str(field(4), "%Y-%m-%d %H:%M:%S")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(field(4), "%Y-%m-%d %H:%M"))
        .map_err(|_| {
            Rejection::new(
                RejectCode::InvalidField,
                format!("invoice date `{}` is not YYYY-MM-DD HH:MM[:SS]", field(4)),
            )
        })?;
    let Some(units) = quantity.checked_abs() else {
        return Err(Rejection::new(
            RejectCode::InvalidAmount,
            format!("quantity {quantity} is absurd"),
        ));
    };
    let customer = match field(6) {
        "" => None,
        id => Some(id.strip_suffix(".0").unwrap_or(id).to_owned()),
    };
    let description = field(2);
    Ok(MappedRow {
        invoice: invoice.to_owned(),
        kind,
        line: PosLine {
            sku: field(1).to_owned(),
            description: (!description.is_empty()).then(|| description.to_owned()),
            category: None,
            quantity: units,
            unit_price_minor,
            discount_minor: 0,
        },
        invoice_date,
        customer,
    })
}

fn transaction(serial: &str, invoice: &Invoice) -> PosTransaction {
    let total_minor = invoice
        .lines
        .iter()
        .map(|line| line.quantity.saturating_mul(line.unit_price_minor))
        .fold(0i64, i64::saturating_add);
    PosTransaction {
        kind: invoice.kind,
        brand: BRAND.to_owned(),
        store_id: "online".to_owned(),
        till_id: "web".to_owned(),
        serial: serial.to_owned(),
        business_day: invoice.invoice_date.format("%Y-%m-%d").to_string(),
        occurred_at_local: invoice.invoice_date.format("%Y-%m-%dT%H:%M:%S").to_string(),
        time_zone: Some("Europe/London".to_owned()),
        currency: "GBP".to_owned(),
        lines: invoice.lines.clone(),
        tenders: Vec::new(),
        total_minor,
        member_card: invoice.customer.clone(),
        phone: None,
        cashier_id: None,
        guide_id: None,
        original_serial: None,
    }
}

/// The record as one CSV line, quoted as the file quotes it.
fn csv_line(record: &csv::StringRecord) -> Result<String, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(record)?;
    let mut bytes = writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))?;
    bytes.pop();
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()))
}

/// The receive time the members' events are given: 2011-01-01, after every invoice.
pub const RECEIVED: i64 = 1_293_840_000_000_000;

/// The invoices of `file` with a member card, canonicalised as ingest does, by card (in the
/// order the cards first appear; each card's events in invoice order): the data set's
/// customers, since a card is a member's only identifier in it.
pub fn member_events(file: OnlineRetail) -> Vec<(String, Vec<kinfold_core::CanonicalEvent>)> {
    let limits = crate::IngestLimits::default();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut members: Vec<(String, Vec<kinfold_core::CanonicalEvent>)> = Vec::new();
    for invoice in file.invoices {
        let Some(card) = invoice.transaction.member_card.clone() else {
            continue;
        };
        let body = kinfold_core::event::EventBody::PosTransaction(invoice.transaction);
        let event = crate::canonicalise(body, "import:online-retail", RECEIVED, &limits)
            .expect("an imported invoice canonicalises")
            .event;
        let at = *index_of.entry(card.clone()).or_insert_with(|| {
            members.push((card, Vec::new()));
            members.len() - 1
        });
        members[at].1.push(event);
    }
    members
}

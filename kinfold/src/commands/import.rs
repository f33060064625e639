//! `kinfold import online-retail FILE`: the UCI Online Retail II data set as POS history.
//!
//! Mapping: an invoice is one till transaction (store `online`, till `web`, serial = invoice
//! number, UK local time); an invoice starting with `C` is a return; `Customer ID` is the member
//! card; rows without one are guest sales. Quantities become positive units (the transaction
//! kind gives the direction); prices are pence. Rows that are not a sale or return line (bad
//! debt adjustments `A...`, stock write-offs with negative quantity on a sale invoice, a
//! positive quantity on a return) go to the dead-letter log with their line number.

use crate::app::App;
use crate::cli::ImportArgs;
use crate::config::Config;
use anyhow::Context;
use kinfold_core::event::{EventBody, PosLine, PosTransaction, PosTransactionKind};
use kinfold_core::money::parse_decimal_minor;
use kinfold_ingest::{IngestOutcome, Origin, RejectCode, Rejection, Submission};
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::io::Write as _;

/// The brand the data set's member cards belong to.
pub const BRAND: &str = "online-retail-ii";
const SUBMIT_BATCH: usize = 1000;

#[derive(Debug)]
struct Invoice {
    first_line: u64,
    kind: PosTransactionKind,
    invoice_date: chrono::NaiveDateTime,
    customer: Option<String>,
    lines: Vec<PosLine>,
    rows: Vec<String>,
}

#[derive(Debug, Default)]
struct Summary {
    rows: u64,
    accepted: u64,
    duplicates: u64,
    rejected_transactions: u64,
    unmapped_rows: u64,
    sales: u64,
    returns: u64,
    with_member_card: u64,
}

fn open(path: &std::path::Path) -> anyhow::Result<Box<dyn Read>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
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
fn csv_line(record: &csv::StringRecord) -> anyhow::Result<String> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(record)?;
    let mut bytes = writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    bytes.pop();
    Ok(String::from_utf8(bytes)?)
}

async fn submit(app: &App, batch: Vec<Submission>, summary: &mut Summary) -> anyhow::Result<()> {
    let outcomes = app
        .writer
        .submit(batch.clone())
        .await
        .context("cannot store transactions")?;
    for (submission, outcome) in batch.iter().zip(&outcomes) {
        match outcome {
            IngestOutcome::Accepted { .. } => summary.accepted += 1,
            IngestOutcome::Duplicate { .. } => summary.duplicates += 1,
            IngestOutcome::Rejected { .. } => {
                summary.rejected_transactions += 1;
                continue;
            }
        }
        if let Ok(event) = &submission.item
            && let EventBody::PosTransaction(transaction) = &event.body
        {
            match transaction.kind {
                PosTransactionKind::Sale => summary.sales += 1,
                PosTransactionKind::Return => summary.returns += 1,
            }
            if transaction.member_card.is_some() {
                summary.with_member_card += 1;
            }
        }
    }
    Ok(())
}

pub async fn online_retail(config: Config, args: &ImportArgs) -> anyhow::Result<()> {
    let app = App::open(config).await?;
    let origin = Origin {
        label: "import:online-retail".to_owned(),
        content_type: Some("text/csv".to_owned()),
        ..Origin::channel("import")
    };
    let mut report = match &args.report {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(open(&args.file)?);
    let mut invoices: Vec<(String, Invoice)> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut summary = Summary::default();
    let mut row_rejections: Vec<Submission> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader
            .read_record(&mut record)
            .with_context(|| format!("csv error near line {}", reader.position().line()))?;
        if !more {
            break;
        }
        summary.rows += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let row_text = csv_line(&record)?;
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
                invoice.lines.push(mapped.line);
                invoice.rows.push(row_text);
            }
            Err(rejection) => {
                summary.unmapped_rows += 1;
                if let Some(report) = report.as_mut() {
                    writeln!(
                        report,
                        "{}",
                        json!({"line": line, "reason_code": rejection.code.as_str(), "reason": rejection.reason, "row": row_text})
                    )?;
                }
                let row_origin = Origin {
                    line: Some(line as i64),
                    ..origin.clone()
                };
                row_rejections.push(app.intake.reject(
                    row_text.as_bytes(),
                    rejection,
                    &row_origin,
                    None,
                    "pos_transaction",
                ));
            }
        }
    }
    if let Some(mut report) = report {
        report.flush()?;
    }
    let invoice_count = invoices.len();
    for chunk in row_rejections.chunks(SUBMIT_BATCH) {
        app.writer
            .submit(chunk.to_vec())
            .await
            .context("cannot store rejected rows")?;
    }
    let mut batch = Vec::with_capacity(SUBMIT_BATCH);
    for (serial, invoice) in &invoices {
        let body = EventBody::PosTransaction(transaction(serial, invoice));
        let invoice_origin = Origin {
            line: Some(invoice.first_line as i64),
            ..origin.clone()
        };
        batch.push(app.intake.record(
            body,
            invoice.rows.join("\n").as_bytes(),
            &invoice_origin,
            None,
        ));
        if batch.len() >= SUBMIT_BATCH {
            submit(&app, std::mem::take(&mut batch), &mut summary).await?;
        }
    }
    if !batch.is_empty() {
        submit(&app, batch, &mut summary).await?;
    }
    let output = json!({
        "rows": summary.rows,
        "invoices": invoice_count,
        "transactions_accepted": summary.accepted,
        "transactions_duplicate": summary.duplicates,
        "transactions_rejected": summary.rejected_transactions,
        "sales": summary.sales,
        "returns": summary.returns,
        "with_member_card": summary.with_member_card,
        "rows_unmapped": summary.unmapped_rows,
    });
    if args.json {
        println!("{output}");
    } else {
        println!(
            "imported {}: {} rows, {} invoices -> {} transactions stored ({} new, {} already there; {} sales, {} returns, {} with a member card); {} invoices rejected, {} rows unmapped (in the dead-letter log with their line numbers{})",
            args.file.display(),
            summary.rows,
            invoice_count,
            summary.accepted + summary.duplicates,
            summary.accepted,
            summary.duplicates,
            summary.sales,
            summary.returns,
            summary.with_member_card,
            summary.rejected_transactions,
            summary.unmapped_rows,
            args.report
                .as_ref()
                .map(|p| format!(" and in {}", p.display()))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

//! `kinfold import online-retail FILE`: the UCI Online Retail II data set as POS history (the
//! mapping is `kinfold_ingest::online_retail`'s). Rows that are not a sale or return line go to
//! the dead-letter log with their line number.

use crate::app::App;
use crate::cli::ImportArgs;
use crate::config::Config;
use anyhow::Context;
use kinfold_core::event::{EventBody, PosTransactionKind};
use kinfold_ingest::online_retail;
use kinfold_ingest::{IngestOutcome, Origin, Submission};
use serde_json::json;
use std::io::Write as _;

const SUBMIT_BATCH: usize = 1000;

#[derive(Debug, Default)]
struct Summary {
    accepted: u64,
    duplicates: u64,
    rejected_transactions: u64,
    sales: u64,
    returns: u64,
    with_member_card: u64,
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
    let file = online_retail::read_path(&args.file)?;
    let mut summary = Summary::default();
    let mut row_rejections: Vec<Submission> = Vec::with_capacity(file.unmapped.len());
    for unmapped in &file.unmapped {
        if let Some(report) = report.as_mut() {
            writeln!(
                report,
                "{}",
                json!({"line": unmapped.line, "reason_code": unmapped.rejection.code.as_str(), "reason": unmapped.rejection.reason, "row": unmapped.row})
            )?;
        }
        let row_origin = Origin {
            line: Some(unmapped.line as i64),
            ..origin.clone()
        };
        row_rejections.push(app.intake.reject(
            unmapped.row.as_bytes(),
            unmapped.rejection.clone(),
            &row_origin,
            None,
            "pos_transaction",
        ));
    }
    if let Some(mut report) = report {
        report.flush()?;
    }
    let invoice_count = file.invoices.len();
    for chunk in row_rejections.chunks(SUBMIT_BATCH) {
        app.writer
            .submit(chunk.to_vec())
            .await
            .context("cannot store rejected rows")?;
    }
    let mut batch = Vec::with_capacity(SUBMIT_BATCH);
    for invoice in file.invoices {
        let body = EventBody::PosTransaction(invoice.transaction);
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
        "rows": file.rows,
        "invoices": invoice_count,
        "transactions_accepted": summary.accepted,
        "transactions_duplicate": summary.duplicates,
        "transactions_rejected": summary.rejected_transactions,
        "sales": summary.sales,
        "returns": summary.returns,
        "with_member_card": summary.with_member_card,
        "rows_unmapped": file.unmapped.len(),
    });
    if args.json {
        println!("{output}");
    } else {
        println!(
            "imported {}: {} rows, {} invoices -> {} transactions stored ({} new, {} already there; {} sales, {} returns, {} with a member card); {} invoices rejected, {} rows unmapped (in the dead-letter log with their line numbers{})",
            args.file.display(),
            file.rows,
            invoice_count,
            summary.accepted + summary.duplicates,
            summary.accepted,
            summary.duplicates,
            summary.sales,
            summary.returns,
            summary.with_member_card,
            summary.rejected_transactions,
            file.unmapped.len(),
            args.report
                .as_ref()
                .map(|p| format!(" and in {}", p.display()))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

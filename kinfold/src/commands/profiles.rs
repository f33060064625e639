//! `kinfold profiles dump`: every customer's stored profile facts and journal, as JSON lines,
//! for audits and tests (the server stopped).

use crate::app::App;
use crate::config::Config;
use kinfold_profile::stage::{PROFILES_TABLE, load_customer};
use serde_json::json;
use std::io::Write;

pub async fn dump(config: Config) -> anyhow::Result<()> {
    let app = App::open(config).await?;
    let kv = app.backends.kv.clone();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for key in kv.partition_keys(PROFILES_TABLE).await? {
        let customer = String::from_utf8_lossy(&key).into_owned();
        let stored = load_customer(kv.as_ref(), &app.registry, &customer).await?;
        let (_, overall) = stored.state.order_facts();
        let line = json!({
            "customer": customer,
            "merged_into": stored.redirect.map(|into| into.to_string()),
            "erased": stored.erased,
            "events": stored.state.events,
            "identifiers": stored.state.identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "journal": stored.journal.events().map(|event| event.event_id.to_string()).collect::<Vec<_>>(),
            "orders": overall.orders,
            "returns": overall.returns,
            "money": overall.money.iter().map(|(currency, spend)| (currency.clone(), json!({
                "gross_minor": spend.gross_minor,
                "returned_minor": spend.returned_minor,
                "net_minor": spend.net_minor(),
            }))).collect::<serde_json::Map<_, _>>(),
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

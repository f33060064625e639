//! `kinfold schemas check|compose`.

use crate::cli::SchemasCommand;
use anyhow::{Context, bail};
use kinfold_schemas::Catalog;

pub fn run(command: &SchemasCommand) -> anyhow::Result<()> {
    let load = |dir: &Option<std::path::PathBuf>| -> anyhow::Result<Catalog> {
        match dir {
            Some(dir) => {
                Catalog::load_dir(dir).with_context(|| format!("cannot read {}", dir.display()))
            }
            None => Ok(Catalog::embedded()),
        }
    };
    match command {
        SchemasCommand::Check { dir } => {
            let catalog = load(dir)?;
            let problems = catalog.problems();
            let versions: usize = catalog.subjects.iter().map(|s| s.versions.len()).sum();
            if problems.is_empty() {
                println!(
                    "{} subjects, {versions} versions: every version valid and BACKWARD_TRANSITIVE compatible",
                    catalog.subjects.len()
                );
                return Ok(());
            }
            for problem in &problems {
                eprintln!("incompatible: {problem}");
            }
            bail!("{} schema problem(s)", problems.len())
        }
        SchemasCommand::Compose { dir } => {
            let composed = load(dir)?
                .composed_canonical()
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&composed)?);
            Ok(())
        }
    }
}

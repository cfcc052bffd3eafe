//! The catalogue: every experiment file of a directory, each named after its file.

use std::path::{Path, PathBuf};

use harness::experiment::Experiment;

/// One experiment of the catalogue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub experiment: Experiment,
}

/// The experiments of a directory, sorted by name.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read the catalogue {dir}: {source}")]
    Read { dir: String, source: std::io::Error },
    #[error(transparent)]
    Experiment(#[from] harness::experiment::ExperimentError),
    #[error("{path}: the experiment is named `{name}`; name it after its file (`{stem}`)")]
    Name {
        path: String,
        name: String,
        stem: String,
    },
    #[error("no experiment `{0}` in the catalogue (`chaos list` shows them)")]
    Unknown(String),
}

/// Where the catalogue shipped with this crate lives.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments")
}

impl Catalogue {
    /// Reads every `*.json` of `dir`; one bad file fails the whole catalogue, naming it.
    pub fn load(dir: &Path) -> Result<Catalogue, CatalogueError> {
        let read = |source| CatalogueError::Read {
            dir: dir.display().to_string(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let entries = paths
            .into_iter()
            .map(|path| entry(&path))
            .collect::<Result<_, _>>()?;
        Ok(Catalogue { entries })
    }

    pub fn get(&self, name: &str) -> Result<&Entry, CatalogueError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| CatalogueError::Unknown(name.to_string()))
    }

    /// The named entries, in the order given.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Entry>, CatalogueError> {
        names.iter().map(|n| self.get(n)).collect()
    }
}

fn entry(path: &Path) -> Result<Entry, CatalogueError> {
    let experiment = Experiment::load(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if experiment.name != stem {
        return Err(CatalogueError::Name {
            path: path.display().to_string(),
            name: experiment.name,
            stem,
        });
    }
    Ok(Entry {
        name: stem,
        path: path.to_path_buf(),
        experiment,
    })
}

//! A database file mapped read-only for the one pass that loads it.
//!
//! Reading a 160 MiB database into a buffer would put all of it in the process's resident
//! set (and its peak) although the load only walks it once. Mapped, the pages already walked
//! can be handed back to the page cache as the walk proceeds, so the load's peak memory is
//! the tables it builds, not the file. The mapping lives only while the file is loaded:
//! replace database files by rename (as `geoipupdate` does), not by rewriting them in place.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};

/// A read-only mapping of a whole file, shareable between the reader and the loader.
#[derive(Clone)]
pub(super) struct MappedFile(Arc<Mmap>);

impl MappedFile {
    /// Maps `path` read-only.
    pub(super) fn open(path: &Path) -> std::io::Result<MappedFile> {
        let file = File::open(path)?;
        // SAFETY: the mapping is private and read-only and never written through; it is
        // dropped as soon as the load finishes (see the module note on replacing files).
        let map = unsafe { Mmap::map(&file)? };
        Ok(MappedFile(Arc::new(map)))
    }

    /// Drops the mapped pages from the resident set; later reads fault them back in from
    /// the page cache with the same contents.
    pub(super) fn release(&self) {
        // SAFETY: the mapping is private and never written, so dropping its pages cannot
        // change what a later read sees: clean file pages are re-read from the file.
        // Failure only means the pages stay resident.
        let _ = unsafe { self.0.unchecked_advise(UncheckedAdvice::DontNeed) };
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

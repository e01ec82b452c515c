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

/// `values` (`len` of them) collected into memory the kernel is asked to back with huge
/// pages: a table read at random by every query (the address → place map, tens of
/// megabytes) then costs one TLB entry per 2 MiB instead of per 4 KiB. Where huge pages are
/// off, it is a plain collect.
pub(super) fn on_huge_pages<T>(len: usize, values: impl IntoIterator<Item = T>) -> Vec<T> {
    const HUGE: usize = 2 << 20;
    let mut table: Vec<T> = Vec::with_capacity(len);
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    #[cfg(target_os = "linux")]
    if bytes >= HUGE {
        let start = table.as_mut_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = start.saturating_add(bytes) / HUGE * HUGE;
        if end > first {
            // SAFETY: [first, end) lies inside the allocation just made (capacity for
            // `bytes` bytes from `start`), untouched yet, and page aligned; the advice
            // changes only how its pages are backed, never their contents, and failure
            // leaves them as they are.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    table.extend(values);
    table
}

//! The response being written: header, question, then records appended and counted per
//! section, so no path keeps header counts by hand. The counts reach the header once, when
//! the response is finished.
//!
//! It writes into the caller's buffer and never allocates beyond it.

use crate::wire::{FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RD, FLAG_TC, RDATA_OFFSET, Rcode};

/// Compression pointers address at most this offset.
pub(super) const MAX_POINTER: usize = 0x3FFF;

/// The header's size, and where the question starts.
pub(super) const HEADER: usize = 12;

/// A section records go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// A response under construction.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Records written per section.
    counts: [u16; 3],
    /// Where the records start: the end of the question.
    records_from: usize,
}

impl<'a> Writer<'a> {
    /// Starts the response to `packet` (a query of at least a header): ID, opcode, RD and
    /// CD copied, QR set, RA clear; then the question, verbatim, when there is one.
    pub(super) fn start(packet: &[u8], question: Option<&[u8]>, out: &'a mut Vec<u8>) -> Self {
        out.clear();
        out.extend_from_slice(&packet[0..2]);
        out.push(FLAG_QR | (packet[2] & (0x78 | FLAG_RD)));
        out.push(packet[3] & FLAG_CD);
        out.extend_from_slice(&[0; 8]);
        if let Some(question) = question {
            out.extend_from_slice(question);
            out[4..6].copy_from_slice(&1u16.to_be_bytes());
        }
        let records_from = out.len();
        Writer {
            out,
            counts: [0; 3],
            records_from,
        }
    }

    /// Appends a record: a pointer to `owner` (an offset in the response) and a
    /// pre-encoded body. Returns the offset of the body's RDATA.
    pub(super) fn record(&mut self, section: Section, owner: usize, body: &[u8]) -> usize {
        let pointer = 0xC000 | (owner.min(MAX_POINTER) as u16);
        self.out.extend_from_slice(&pointer.to_be_bytes());
        let rdata_at = self.out.len() + RDATA_OFFSET;
        self.out.extend_from_slice(body);
        self.counted(section);
        rdata_at
    }

    /// Appends a record whose owner is written out (`name`, uncompressed wire form): for
    /// owners not in the response yet (an NSEC's). Returns where the owner starts.
    pub(super) fn record_named(&mut self, section: Section, name: &[u8], body: &[u8]) -> usize {
        let at = self.out.len();
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(body);
        self.counted(section);
        at
    }

    /// Appends a record that `write` writes whole (owner, type, class, TTL, RDATA).
    pub(super) fn record_with(&mut self, section: Section, write: impl FnOnce(&mut Vec<u8>)) {
        write(self.out);
        self.counted(section);
    }

    fn counted(&mut self, section: Section) {
        let count = &mut self.counts[section as usize];
        *count = count.saturating_add(1);
    }

    /// Records written in `section`.
    pub(super) fn count(&self, section: Section) -> u16 {
        self.counts[section as usize]
    }

    /// The response's length so far.
    pub(super) fn len(&self) -> usize {
        self.out.len()
    }

    /// Leaves out the additional records written from `at` on (optional data that does not
    /// fit; RFC 2181 §9): only additional records may follow `at`.
    pub(super) fn drop_additional_from(&mut self, at: usize) {
        self.out.truncate(at.max(self.records_from));
        self.counts[Section::Additional as usize] = 0;
    }

    /// Leaves out every record: the header and question stay.
    pub(super) fn drop_records(&mut self) {
        self.out.truncate(self.records_from);
        self.counts = [0; 3];
    }

    /// Sets or clears AA.
    pub(super) fn authoritative(&mut self, on: bool) {
        if on {
            self.out[2] |= FLAG_AA;
        } else {
            self.out[2] &= !FLAG_AA;
        }
    }

    /// Sets TC.
    pub(super) fn truncated(&mut self) {
        self.out[2] |= FLAG_TC;
    }

    /// Sets the header's (low four bits of the) rcode.
    pub(super) fn rcode(&mut self, rcode: Rcode) {
        self.out[3] |= (rcode as u16 & 0x0F) as u8;
    }

    /// Writes the section counts into the header.
    pub(super) fn finish(self) {
        for (i, count) in self.counts.iter().enumerate() {
            let at = 6 + 2 * i;
            self.out[at..at + 2].copy_from_slice(&count.to_be_bytes());
        }
    }
}

//! Static records from an RFC 1035 master file (`records_file:`), so operators moving from
//! BIND, Knot or NSD keep their files: `$ORIGIN`, `$TTL`, `$INCLUDE`, parentheses, comments,
//! `@`, omitted owners, TTLs and classes, TTL units (`1h30m`), and character-strings with
//! `\X` and `\DDD` escapes (RFC 1035 §5.1). Read here rather than by a general parser so
//! that every record, and every error, carries the file and line it is at, and a record
//! with more than its type takes is refused rather than guessed at.
//!
//! The file's SOA and apex NS records are not served: the policy's `soa` and `ns` are (one
//! place says what the zone's authority is). Types geosteer does not serve are refused.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::model::{DomainName, RecordData, RecordSet, RecordType};

/// A records file error: the file (the records file or one it includes), the line from 1
/// (0 when it is about the whole file), and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneFileError {
    /// The file.
    pub file: PathBuf,
    /// Line of the file, from 1; 0 when it is about the whole file.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

/// A record set read from a master file, with where its first record is.
#[derive(Debug, Clone)]
pub struct FileSet {
    /// The set.
    pub set: RecordSet,
    /// The file its first record is in.
    pub file: PathBuf,
    /// That record's line.
    pub line: u64,
}

/// `$INCLUDE`s nested deeper than this are refused (a loop would never end).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Where a policy's `records_file` is: relative paths are relative to the policy file.
pub fn resolve(policy_path: &Path, written: &str) -> PathBuf {
    let written = Path::new(written);
    if written.is_absolute() {
        written.to_path_buf()
    } else {
        policy_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(written)
    }
}

/// The files a policy names, for the reload watcher (without validating the whole
/// policy): its records file and every file that `$INCLUDE`s, and its key directory (whose
/// time changes as key files come and go in a rollover).
pub fn files_named_by(policy_path: &Path) -> Vec<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Keys {
        keys: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Reference {
        records_file: Option<String>,
        dnssec: Option<Keys>,
    }
    let Ok(text) = super::read_capped(policy_path, super::MAX_POLICY_BYTES, "policy") else {
        return Vec::new();
    };
    let Ok(reference) = serde_saphyr::from_str::<Reference>(&text) else {
        return Vec::new();
    };
    let keys = (reference.dnssec.and_then(|d| d.keys)).map(|dir| resolve(policy_path, &dir));
    let Some(file) = reference.records_file else {
        return keys.into_iter().collect();
    };
    let mut files = vec![resolve(policy_path, &file)];
    let mut next = 0;
    while next < files.len() && files.len() <= MAX_INCLUDE_DEPTH * 8 {
        let path = files[next].clone();
        next += 1;
        let Ok(text) = super::read_capped(&path, super::MAX_RECORDS_BYTES, "records file") else {
            continue;
        };
        for entry in lex(&text).0 {
            if let Some(Token { text: word, .. }) = entry.tokens.first()
                && word.eq_ignore_ascii_case(b"$INCLUDE")
                && let Some(included) = entry.tokens.get(1)
            {
                let included = String::from_utf8_lossy(&included.text).into_owned();
                let included = resolve(&path, &included);
                if !files.contains(&included) {
                    files.push(included);
                }
            }
        }
    }
    files.extend(keys);
    files
}

/// Parses a master file's text for the zone `origin` into the record sets geosteer serves,
/// following `$INCLUDE`s (relative to the including file); every error found, located.
pub fn parse(
    path: &Path,
    text: &str,
    origin: &DomainName,
) -> Result<Vec<FileSet>, Vec<ZoneFileError>> {
    let mut reader = Reader {
        zone: origin,
        records: Vec::new(),
        errors: Vec::new(),
        bytes: text.len(),
    };
    let state = FileState {
        origin: origin.clone(),
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
    };
    reader.file(path, text, state, &mut vec![path.to_path_buf()]);
    let sets = reader.sets();
    if reader.errors.is_empty() {
        Ok(sets)
    } else {
        Err(reader.errors)
    }
}

/// One record as read.
struct Read {
    name: DomainName,
    ttl: u32,
    data: RecordData,
    file: PathBuf,
    line: u64,
}

struct Reader<'a> {
    zone: &'a DomainName,
    records: Vec<Read>,
    errors: Vec<ZoneFileError>,
    /// Bytes read over every file, bounded like one records file.
    bytes: usize,
}

/// What a file's entries carry from one to the next.
#[derive(Clone)]
struct FileState {
    origin: DomainName,
    /// `$TTL`.
    default_ttl: Option<u32>,
    /// The last TTL written on a record (used when one has none and there is no `$TTL`).
    last_ttl: Option<u32>,
    /// The last owner, for entries that begin with a blank.
    last_owner: Option<DomainName>,
}

impl Reader<'_> {
    fn error(&mut self, file: &Path, line: u64, message: impl Into<String>) {
        self.errors.push(ZoneFileError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn file(&mut self, path: &Path, text: &str, mut state: FileState, stack: &mut Vec<PathBuf>) {
        let (entries, lex_errors) = lex(text);
        for (line, message) in lex_errors {
            self.error(path, line, message);
        }
        for entry in entries {
            let Some(first) = entry.tokens.first() else {
                continue;
            };
            let directive = !entry.blank_start && first.text.first() == Some(&b'$');
            let outcome = if directive {
                self.directive(path, &entry, &mut state, stack)
            } else {
                self.record(path, &entry, &mut state)
            };
            if let Err(message) = outcome {
                self.error(path, entry.line, message);
            }
        }
    }

    fn directive(
        &mut self,
        path: &Path,
        entry: &Entry,
        state: &mut FileState,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), String> {
        let word = String::from_utf8_lossy(&entry.tokens[0].text).to_ascii_uppercase();
        let args = &entry.tokens[1..];
        let arity = |n: std::ops::RangeInclusive<usize>| {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(format!(
                    "{word} takes {} argument(s), not {}",
                    n.end(),
                    args.len()
                ))
            }
        };
        match word.as_str() {
            "$ORIGIN" => {
                arity(1..=1)?;
                state.origin = name(&args[0], &state.origin)?;
            }
            "$TTL" => {
                arity(1..=1)?;
                state.default_ttl = Some(ttl(&args[0])?);
            }
            "$INCLUDE" => {
                arity(1..=2)?;
                let written = String::from_utf8_lossy(&args[0].text).into_owned();
                let included = resolve(path, &written);
                if stack.len() > MAX_INCLUDE_DEPTH || stack.contains(&included) {
                    return Err(format!(
                        "$INCLUDE {written}: included again inside itself, or nested deeper than {MAX_INCLUDE_DEPTH}"
                    ));
                }
                let text = super::read_capped(&included, super::MAX_RECORDS_BYTES, "included file")
                    .map_err(|why| format!("$INCLUDE {}: {why}", included.display()))?;
                self.bytes = self.bytes.saturating_add(text.len());
                if self.bytes > super::MAX_RECORDS_BYTES as usize {
                    return Err(format!(
                        "$INCLUDE {}: the records files together are over {} MiB",
                        included.display(),
                        super::MAX_RECORDS_BYTES >> 20
                    ));
                }
                // The included file starts from this origin (or the one given) and leaves
                // this file's state as it was (RFC 1035 §5.1).
                let mut inner = state.clone();
                if let Some(origin) = args.get(1) {
                    inner.origin = name(origin, &state.origin)?;
                }
                stack.push(included.clone());
                self.file(&included, &text, inner, stack);
                stack.pop();
            }
            _ => {
                return Err(format!(
                    "unknown directive {word} ($ORIGIN, $TTL and $INCLUDE are read; $GENERATE is not)"
                ));
            }
        }
        Ok(())
    }

    fn record(&mut self, path: &Path, entry: &Entry, state: &mut FileState) -> Result<(), String> {
        let mut tokens = entry.tokens.iter().peekable();
        let owner = if entry.blank_start {
            state
                .last_owner
                .clone()
                .ok_or("a record without an owner before any record that has one")?
        } else {
            let token = tokens.next().ok_or("an empty record")?;
            name(token, &state.origin)?
        };
        let mut record_ttl = None;
        for _ in 0..2 {
            let Some(token) = tokens.peek() else { break };
            if token.text.first().is_some_and(u8::is_ascii_digit) && !token.quoted {
                record_ttl = Some(ttl(token)?);
                tokens.next();
            } else if is_class(token) {
                let class = String::from_utf8_lossy(&token.text).to_ascii_uppercase();
                if class != "IN" {
                    return Err(format!("class {class}: only IN records are served"));
                }
                tokens.next();
            }
        }
        let kind = tokens.next().ok_or("no record type")?;
        let kind = String::from_utf8_lossy(&kind.text).to_ascii_uppercase();
        let rdata: Vec<&Token> = tokens.collect();
        state.last_owner = Some(owner.clone());
        if let Some(t) = record_ttl {
            state.last_ttl = Some(t);
        }
        let ttl = record_ttl
            .or(state.default_ttl)
            .or(state.last_ttl)
            .ok_or("no TTL: give the record one, or put a $TTL line before it")?;
        let Some(data) = record_data(&kind, &rdata, &state.origin)? else {
            return Ok(()); // the file's SOA: the policy's is served
        };
        if !owner.is_at_or_below(self.zone) {
            return Err(format!("'{owner}' is outside the zone {}", self.zone));
        }
        self.records.push(Read {
            name: owner,
            ttl,
            data,
            file: path.to_path_buf(),
            line: entry.line,
        });
        Ok(())
    }

    /// The records grouped into sets (name and type), in file order; the apex NS left out;
    /// a record given twice is an error at its second line.
    fn sets(&mut self) -> Vec<FileSet> {
        let mut sets: Vec<FileSet> = Vec::new();
        let records = std::mem::take(&mut self.records);
        for read in records {
            let kind = read.data.record_type();
            if kind == RecordType::NS && read.name == *self.zone {
                continue;
            }
            match sets
                .iter_mut()
                .find(|s| s.set.name == read.name && s.set.record_type() == kind)
            {
                Some(set) if set.set.data.contains(&read.data) => {
                    let first = format!("{}:{}", set.file.display(), set.line);
                    let message = format!(
                        "{} {}: the same record again (first at {first})",
                        read.name,
                        type_name(kind)
                    );
                    self.error(&read.file, read.line, message);
                }
                Some(set) => set.set.data.push(read.data),
                None => sets.push(FileSet {
                    set: RecordSet {
                        name: read.name,
                        ttl: read.ttl,
                        data: vec![read.data],
                    },
                    file: read.file,
                    line: read.line,
                }),
            }
        }
        sets
    }
}

/// The types a records file may hold, as messages list them.
const SERVED: &str = "A, AAAA, CNAME, TXT, MX, SRV, CAA, NS";

/// Types that exist but are not served, named as such (anything else is "not a type").
const KNOWN_UNSERVED: [&str; 24] = [
    "PTR",
    "HINFO",
    "DNAME",
    "DS",
    "DNSKEY",
    "RRSIG",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "TLSA",
    "SSHFP",
    "NAPTR",
    "LOC",
    "RP",
    "AFSDB",
    "CDS",
    "CDNSKEY",
    "SVCB",
    "HTTPS",
    "URI",
    "SMIMEA",
    "OPENPGPKEY",
    "CERT",
    "ZONEMD",
];

fn type_name(t: RecordType) -> String {
    hickory_proto::rr::RecordType::from(t.0).to_string()
}

/// A record's data from its tokens; `None` for an SOA (read, not served).
fn record_data(
    kind: &str,
    rdata: &[&Token],
    origin: &DomainName,
) -> Result<Option<RecordData>, String> {
    let takes = |n: usize, what: &str| -> Result<(), String> {
        match rdata.len() {
            len if len == n => Ok(()),
            len if len < n => Err(format!("{kind} needs {what}")),
            _ => Err(format!(
                "unexpected '{}' after the {kind} record's data ({what})",
                String::from_utf8_lossy(&rdata[n].text)
            )),
        }
    };
    let text = |i: usize| String::from_utf8_lossy(&rdata[i].text).into_owned();
    let number = |i: usize, what: &str| -> Result<u16, String> {
        text(i).parse::<u16>().map_err(|_| {
            format!(
                "{kind}: {what} '{}' is not a number from 0 to 65535",
                text(i)
            )
        })
    };
    let data = match kind {
        "A" => {
            takes(1, "an IPv4 address")?;
            RecordData::A(
                text(0)
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("A: '{}' is not an IPv4 address", text(0)))?,
            )
        }
        "AAAA" => {
            takes(1, "an IPv6 address")?;
            RecordData::Aaaa(
                text(0)
                    .parse::<Ipv6Addr>()
                    .map_err(|_| format!("AAAA: '{}' is not an IPv6 address", text(0)))?,
            )
        }
        "CNAME" => {
            takes(1, "a target name")?;
            RecordData::Cname(name(rdata[0], origin)?)
        }
        "NS" => {
            takes(1, "a name server name")?;
            RecordData::Ns(name(rdata[0], origin)?)
        }
        "MX" => {
            takes(2, "a preference and an exchange")?;
            RecordData::Mx {
                preference: number(0, "preference")?,
                exchange: name(rdata[1], origin)?,
            }
        }
        "SRV" => {
            takes(4, "priority, weight, port and target")?;
            RecordData::Srv {
                priority: number(0, "priority")?,
                weight: number(1, "weight")?,
                port: number(2, "port")?,
                target: name(rdata[3], origin)?,
            }
        }
        "TXT" => txt(rdata)?,
        "CAA" => {
            takes(3, "flags, a tag and a value")?;
            caa(&text(0), text(1), text(2))?
        }
        "SOA" => {
            takes(
                7,
                "mname, rname, serial, refresh, retry, expire and minimum",
            )?;
            return Ok(None);
        }
        "SPF" => {
            return Err("type SPF is obsolete (RFC 7208 §3.1): publish the policy as TXT".into());
        }
        other if KNOWN_UNSERVED.contains(&other) || other.starts_with("TYPE") => {
            return Err(format!(
                "type {other} is not served (records files may hold {SERVED})"
            ));
        }
        other => {
            return Err(format!(
                "'{other}' is not a record type (records files may hold {SERVED})"
            ));
        }
    };
    Ok(Some(data))
}

/// TXT data: one or more character-strings of at most 255 octets each.
fn txt(rdata: &[&Token]) -> Result<RecordData, String> {
    if rdata.is_empty() {
        return Err("TXT needs at least one character-string".into());
    }
    let strings = rdata
        .iter()
        .map(|t| {
            if t.text.len() > 255 {
                Err(format!(
                    "TXT: a character-string is at most 255 octets, this one is {} (split it into several quoted strings)",
                    t.text.len()
                ))
            } else {
                Ok(t.text.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordData::Txt(strings))
}

/// CAA data (RFC 8659): flags, a tag of letters and digits, a value.
fn caa(flags: &str, tag: String, value: String) -> Result<RecordData, String> {
    let flags = flags
        .parse::<u8>()
        .map_err(|_| format!("CAA: flags '{flags}' is not a number from 0 to 255"))?;
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("CAA: tag '{tag}' must be letters and digits"));
    }
    Ok(RecordData::Caa { flags, tag, value })
}

fn is_class(token: &Token) -> bool {
    !token.quoted
        && ["IN", "CH", "HS", "CS"]
            .iter()
            .any(|c| token.text.eq_ignore_ascii_case(c.as_bytes()))
}

/// A name token: `@` is the origin, a name ending in a dot is absolute, others are relative
/// to the origin.
fn name(token: &Token, origin: &DomainName) -> Result<DomainName, String> {
    if token.escaped || token.quoted {
        return Err(format!(
            "'{}': quoted or escaped names are not served",
            String::from_utf8_lossy(&token.text)
        ));
    }
    let text = String::from_utf8_lossy(&token.text);
    let absolute = if text == "@" {
        return Ok(origin.clone());
    } else if text.ends_with('.') {
        text.into_owned()
    } else if origin.labels().is_empty() {
        format!("{text}.")
    } else {
        format!("{text}.{origin}")
    };
    DomainName::parse(&absolute).map_err(|e| format!("'{absolute}': {e}"))
}

/// A TTL: seconds, or BIND's units (`1w2d3h4m5s`), at most 2^31 − 1 (RFC 2181 §8).
fn ttl(token: &Token) -> Result<u32, String> {
    let text = String::from_utf8_lossy(&token.text).to_ascii_lowercase();
    let bad = || format!("'{text}' is not a TTL (seconds, or units as in 1h30m)");
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d)));
            number = Some(n.ok_or_else(bad)?);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n = number.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if let Some(n) = number {
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    u32::try_from(total)
        .ok()
        .filter(|t| *t <= i32::MAX as u32)
        .ok_or_else(|| format!("TTL '{text}' is over 2147483647 seconds (RFC 2181 §8)"))
}

/// One word of an entry, escapes decoded.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: Vec<u8>,
    /// Written in double quotes.
    quoted: bool,
    /// Held a `\` escape.
    escaped: bool,
}

/// One entry (a record or a directive): its tokens, the line it starts at, and whether it
/// starts with a blank (an omitted owner).
#[derive(Debug)]
struct Entry {
    tokens: Vec<Token>,
    line: u64,
    blank_start: bool,
}

/// Splits a master file into entries: parentheses join lines, `;` starts a comment outside
/// quotes, quotes group a character-string, `\X` and `\DDD` escape. Returns the entries and
/// the errors `(line, message)` (an unclosed quote or parenthesis, a bad escape).
fn lex(text: &str) -> (Vec<Entry>, Vec<(u64, String)>) {
    let bytes = text.as_bytes();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut line: u64 = 1;
    let mut i = 0;
    let mut entry = Entry {
        tokens: Vec::new(),
        line: 1,
        blank_start: false,
    };
    let mut depth = 0u32;
    let mut at_line_start = true;
    let flush = |entry: &mut Entry, entries: &mut Vec<Entry>, next_line: u64| {
        let done = std::mem::replace(
            entry,
            Entry {
                tokens: Vec::new(),
                line: next_line,
                blank_start: false,
            },
        );
        if !done.tokens.is_empty() {
            entries.push(done);
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        if at_line_start && depth == 0 {
            entry.line = line;
            entry.blank_start = b == b' ' || b == b'\t';
            at_line_start = false;
        }
        match b {
            b'\n' => {
                line += 1;
                i += 1;
                if depth == 0 {
                    flush(&mut entry, &mut entries, line);
                    at_line_start = true;
                }
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b';' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    errors.push((line, "')' without '('".to_string()));
                } else {
                    depth -= 1;
                }
                i += 1;
            }
            _ => {
                let token = read_token(bytes, &mut i, &mut line, &mut errors);
                entry.tokens.push(token);
            }
        }
    }
    if depth > 0 {
        errors.push((entry.line, "'(' without ')'".to_string()));
    }
    flush(&mut entry, &mut entries, line);
    (entries, errors)
}

/// Reads one word (quoted or not) starting at `bytes[*i]`, decoding `\X` and `\DDD`
/// escapes; moves `i` past it and counts the lines a quoted string spans.
fn read_token(
    bytes: &[u8],
    i: &mut usize,
    line: &mut u64,
    errors: &mut Vec<(u64, String)>,
) -> Token {
    let quoted = bytes[*i] == b'"';
    let started = *line;
    if quoted {
        *i += 1;
    }
    let mut token = Token {
        text: Vec::new(),
        quoted,
        escaped: false,
    };
    let mut closed = !quoted;
    while *i < bytes.len() {
        let c = bytes[*i];
        if quoted && c == b'"' {
            closed = true;
            *i += 1;
            break;
        }
        if !quoted && matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"') {
            break;
        }
        if c == b'\n' {
            *line += 1;
        }
        if c != b'\\' {
            token.text.push(c);
            *i += 1;
            continue;
        }
        token.escaped = true;
        let digits = bytes
            .get(*i + 1..*i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        if let Some(d) = digits {
            let value = d.iter().fold(0u32, |v, x| v * 10 + u32::from(x - b'0'));
            match u8::try_from(value) {
                Ok(v) => token.text.push(v),
                Err(_) => errors.push((*line, format!("escape \\{value} is over 255"))),
            }
            *i += 4;
        } else if let Some(&next) = bytes.get(*i + 1) {
            if next == b'\n' {
                *line += 1;
            }
            token.text.push(next);
            *i += 2;
        } else {
            errors.push((*line, "a '\\' at the end of the file".to_string()));
            *i += 1;
        }
    }
    if !closed {
        errors.push((started, "a quoted string that never ends".to_string()));
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<FileSet>, Vec<ZoneFileError>> {
        let origin = DomainName::parse("example.").expect("origin");
        parse(Path::new("z.zone"), text, &origin)
    }

    fn txt(sets: &[FileSet], owner: &str) -> Vec<Vec<u8>> {
        let name = DomainName::parse(owner).expect("name");
        match &sets
            .iter()
            .find(|s| s.set.name == name)
            .expect("set")
            .set
            .data[0]
        {
            RecordData::Txt(strings) => strings.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn character_strings_are_read_as_rfc_1035_says() {
        let sets = read(
            "$TTL 60\n\
             t1 TXT \"p1\" \"p2\"\n\
             t2 TXT ( \"p1\"\n  \"p2\" ) ; a comment\n\
             t3 IN TXT plain word\n\
             t4 TXT \"a \\\"quoted\\\" word; not a comment\" \"\\065\\066\"\n",
        )
        .expect("parses");
        assert_eq!(
            txt(&sets, "t1.example."),
            vec![b"p1".to_vec(), b"p2".to_vec()]
        );
        assert_eq!(
            txt(&sets, "t2.example."),
            vec![b"p1".to_vec(), b"p2".to_vec()]
        );
        assert_eq!(
            txt(&sets, "t3.example."),
            vec![b"plain".to_vec(), b"word".to_vec()]
        );
        assert_eq!(
            txt(&sets, "t4.example."),
            vec![b"a \"quoted\" word; not a comment".to_vec(), b"AB".to_vec()]
        );
        assert_eq!(sets[1].line, 3);
    }

    #[test]
    fn owners_ttls_and_classes_may_be_omitted_in_any_order() {
        let sets = read(
            "$ORIGIN example.\n$TTL 1h\nweb 300 IN A 192.0.2.1\n  IN 60 AAAA 2001:db8::1\n\
             @ MX 10 mail\nsub.example. 1d2h A 192.0.2.2\n",
        )
        .expect("parses");
        let ttl_of = |owner: &str, kind: RecordType| {
            let name = DomainName::parse(owner).expect("name");
            sets.iter()
                .find(|s| s.set.name == name && s.set.record_type() == kind)
                .map(|s| s.set.ttl)
        };
        assert_eq!(ttl_of("web.example.", RecordType::A), Some(300));
        assert_eq!(ttl_of("web.example.", RecordType::AAAA), Some(60));
        assert_eq!(ttl_of("example.", RecordType::MX), Some(3600));
        assert_eq!(ttl_of("sub.example.", RecordType::A), Some(93_600));
    }

    #[test]
    fn errors_name_their_line_and_refuse_what_is_left_over() {
        let errors = read("$TTL 60\nok A 192.0.2.1\noops IN A 192.0.2.1 extra\nh HINFO \"PC\" \"Linux\"\nd A 192.0.2.9\nd A 192.0.2.9\n")
            .expect_err("refused");
        let found: Vec<(u64, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 3 && m.contains("unexpected 'extra'")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 4 && m.contains("type HINFO is not served")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 6 && m.contains("the same record again (first at z.zone:5)")),
            "{found:?}"
        );
        let errors = read("t TXT \"never closed\n").expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("quoted string that never ends"))
        );
        let long = format!("$TTL 60\nlong TXT \"{}\"\n", "x".repeat(256));
        let errors = read(&long).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.line == 2 && e.message.contains("at most 255 octets"))
        );
    }

    #[test]
    fn ttls_take_units_and_stay_in_range() {
        let t = |s: &str| {
            ttl(&Token {
                text: s.as_bytes().to_vec(),
                quoted: false,
                escaped: false,
            })
        };
        assert_eq!(t("3600"), Ok(3600));
        assert_eq!(t("1h30m"), Ok(5400));
        assert_eq!(t("1W"), Ok(604_800));
        assert!(t("4294967296").is_err());
        assert!(t("2147483648").is_err());
        assert!(t("1x").is_err());
        assert!(t("h").is_err());
    }
}

//! CHAOS-class identity queries (`dig CH TXT id.server`): which instance answered, behind
//! anycast, and (unless hidden) its version. Nothing here touches the zones.

use super::options::ServeOptions;
use super::writer::{Section, Writer};
use crate::wire::{CLASS_CH, Rcode, RecordType};

/// CHAOS-class identity queries (`dig CH TXT id.server`): the instance and, unless hidden,
/// the version. Anything else in class CH is refused.
pub(super) fn answer_chaos(
    name: &[u8],
    qtype: u16,
    options: &ServeOptions,
    writer: &mut Writer,
) -> Rcode {
    let text = match name {
        b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => match &options.version {
            Some(v) => v.as_str(),
            None => return Rcode::Refused,
        },
        b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => options.identity.as_str(),
        _ => return Rcode::Refused,
    };
    writer.authoritative(true);
    if qtype != RecordType::TXT.0 && qtype != RecordType::ANY.0 {
        return Rcode::NoError;
    }
    let text = &text.as_bytes()[..text.len().min(255)];
    writer.record_with(Section::Answer, |out| {
        out.extend_from_slice(&0xC00Cu16.to_be_bytes());
        out.extend_from_slice(&RecordType::TXT.0.to_be_bytes());
        out.extend_from_slice(&CLASS_CH.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(text.len() as u16 + 1).to_be_bytes());
        out.push(text.len() as u8);
        out.extend_from_slice(text);
    });
    Rcode::NoError
}

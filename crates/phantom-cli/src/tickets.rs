//! `--resume FILE`: a small cache of resumption tickets, one line per server,
//! `ADDRESS KEY_ID TICKET` (key id and ticket in hex), written with mode 0600: a
//! ticket is a secret (it resumes the earlier session's keys). A ticket is used once:
//! it is taken out when a connection starts and replaced by the one the new
//! connection receives. Lines that do not parse are dropped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use phantom::{HybridVerifyingKey, ResumptionTicket};
use zeroize::Zeroizing;

use crate::{CliError, keys};

/// Most servers remembered; the oldest entries go first.
const MAX_ENTRIES: usize = 64;

/// One cached ticket.
struct Entry {
    addr: String,
    key_id: String,
    ticket: Zeroizing<String>,
}

/// The cache file's contents.
pub(crate) struct TicketCache {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl TicketCache {
    /// Reads `path` (a missing file is an empty cache).
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Zeroizing::new(String::new()),
            Err(e) => {
                return Err(CliError::File {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        };
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (addr, key_id, ticket) = (f.next()?, f.next()?, f.next()?);
                Some(Entry {
                    addr: addr.to_owned(),
                    key_id: key_id.to_owned(),
                    ticket: Zeroizing::new(ticket.to_owned()),
                })
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// True if a ticket for a server at `addr` is cached (under any key).
    pub(crate) fn has(&self, addr: &str) -> bool {
        self.entries.iter().any(|e| e.addr == addr)
    }

    /// Takes the ticket for the server at `addr` with `key` out of the cache.
    pub(crate) fn take(
        &mut self,
        addr: &str,
        key: &HybridVerifyingKey,
    ) -> Option<ResumptionTicket> {
        let key_id = keys::to_hex(&key.key_id());
        let i = self
            .entries
            .iter()
            .position(|e| e.addr == addr && e.key_id == key_id)?;
        let e = self.entries.remove(i);
        let bytes = Zeroizing::new(keys::unhex(&e.ticket)?);
        ResumptionTicket::from_bytes(&bytes).ok()
    }

    /// Puts the ticket for the server at `addr` with `key` into the cache.
    pub(crate) fn put(&mut self, addr: &str, key: &HybridVerifyingKey, ticket: &ResumptionTicket) {
        let key_id = keys::to_hex(&key.key_id());
        self.entries
            .retain(|e| !(e.addr == addr && e.key_id == key_id));
        self.entries.push(Entry {
            addr: addr.to_owned(),
            key_id,
            ticket: Zeroizing::new(keys::to_hex(&ticket.to_bytes())),
        });
        let excess = self.entries.len().saturating_sub(MAX_ENTRIES);
        self.entries.drain(..excess);
    }

    /// Writes the cache back (mode 0600, replacing the file in one rename).
    pub(crate) fn save(&self) -> Result<(), CliError> {
        let err = |e| CliError::File {
            path: self.path.display().to_string(),
            source: e,
        };
        let mut text = Zeroizing::new(String::new());
        for e in &self.entries {
            let _ = writeln!(text, "{} {} {}", e.addr, e.key_id, e.ticket.as_str());
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        phantom::keyfiles::write_secret_file(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

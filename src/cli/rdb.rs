//! `shardsync rdb FILE [--json]`: print an RDB file's keys.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use color_eyre::eyre::{Result, WrapErr};
use shardsync::rdb::json::{key_name, JsonWriter};
use shardsync::rdb::{Chunk, Event, KeyStart, RdbReader};

pub fn run(path: &Path, json: bool) -> Result<()> {
    let file = File::open(path).wrap_err_with(|| format!("cannot open RDB file {}", path.display()))?;
    let mut reader = RdbReader::new(file);
    let stdout = io::stdout().lock();
    let out = BufWriter::with_capacity(1 << 16, stdout);
    let mut sink: Box<dyn Sink> = if json { Box::new(JsonWriter::new(out)) } else { Box::new(Summary::new(out)) };
    loop {
        let ev = reader.next_event().wrap_err_with(|| format!("while reading {}", path.display()))?;
        let Some(ev) = ev else { break };
        if let Event::Warning(w) = &ev {
            eprintln!("warning: {}: byte {}: {}", path.display(), w.offset, w.message);
        }
        match sink.event(&ev) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.wrap_err("while writing the output")?,
        }
    }
    sink.flush()?;
    Ok(())
}

trait Sink {
    fn event(&mut self, ev: &Event) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

impl<W: Write> Sink for JsonWriter<W> {
    fn event(&mut self, ev: &Event) -> io::Result<()> {
        JsonWriter::event(self, ev)
    }
    fn flush(&mut self) -> io::Result<()> {
        JsonWriter::flush(self)
    }
}

/// One human-readable line per key: db, type, size, expiry, name.
struct Summary<W> {
    out: W,
    key: Option<KeyStart>,
    elements: u64,
    bytes: u64,
    keys: u64,
}

impl<W: Write> Summary<W> {
    fn new(out: W) -> Self {
        Summary { out, key: None, elements: 0, bytes: 0, keys: 0 }
    }
}

impl<W: Write> Sink for Summary<W> {
    fn event(&mut self, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Header { version } => writeln!(self.out, "# RDB version {version}"),
            Event::Aux(kv) => {
                writeln!(self.out, "# aux {} = {}", String::from_utf8_lossy(&kv.0), String::from_utf8_lossy(&kv.1))
            }
            Event::Function { .. } | Event::FunctionPreGa(_) => writeln!(self.out, "# function library"),
            Event::ModuleAux(m) => writeln!(self.out, "# module aux data of {}", m.name),
            Event::KeyStart(k) => {
                self.key = Some((**k).clone());
                self.elements = 0;
                self.bytes = 0;
                Ok(())
            }
            Event::Chunk(c) => {
                self.elements += match c {
                    Chunk::String(b) => {
                        self.bytes += b.len() as u64;
                        0
                    }
                    Chunk::ListItems(v) | Chunk::SetMembers(v) => v.len() as u64,
                    Chunk::HashFields(v) => v.len() as u64,
                    Chunk::ZsetMembers(v) => v.len() as u64,
                    Chunk::StreamEntries(v) => v.len() as u64,
                    _ => 0,
                };
                Ok(())
            }
            Event::KeyEnd { .. } => {
                let Some(k) = self.key.take() else { return Ok(()) };
                self.keys += 1;
                let size = match k.kind {
                    shardsync::rdb::ValueKind::String => format!("{} bytes", self.bytes),
                    shardsync::rdb::ValueKind::Module => "module value".to_string(),
                    _ => format!("{} elements", self.elements),
                };
                let ttl = k.expire_at_ms.map(|e| format!("  expires {}", utc_time(e))).unwrap_or_default();
                writeln!(self.out, "db {}  {:<6}  {:<14}  {}{ttl}", k.db, k.kind.as_str(), size, key_name(&k.key))
            }
            Event::Eof { checksum } => writeln!(
                self.out,
                "# {} keys; checksum {}",
                self.keys,
                checksum.map_or("absent".to_string(), |c| format!("{c:#018x} verified"))
            ),
            _ => Ok(()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Unix milliseconds as an ISO-8601 UTC time.
fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = shardsync::human::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_time(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(utc_time(1_764_064_200_123), "2025-11-25T09:50:00.123Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}

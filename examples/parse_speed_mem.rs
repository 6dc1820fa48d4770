//! Parse-speed probe on an in-memory copy (what the criterion bench measures).
use shardsync::rdb::{Event, RdbReader};
fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_speed_mem FILE");
    let data = std::fs::read(&path).expect("read");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut reader = RdbReader::new(&data[..]);
        let mut keys = 0u64;
        while let Some(ev) = reader.next_event().expect("parse") {
            if let Event::KeyEnd { .. } = ev {
                keys += 1;
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!("{keys} keys in {s:.3} s: {:.2} M keys/s", keys as f64 / s / 1e6);
    }
}

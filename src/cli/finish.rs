//! `shardsync finish --config F`: after cut-over, remove what the tool left:
//! the checkpoint keys on the destination, the heartbeat key on the
//! sources, and the task's state dir. Refused while the task runs.

use std::path::Path;

use shardsync::config::Secret;
use shardsync::engine::state_lock;
use shardsync::probe;
use shardsync::resp::{Cmd, Value};

use super::exit::{EXIT_FAILED, EXIT_OK};

pub fn run(config: &Path) -> i32 {
    let (task, rt) = match super::task_and_runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let state = task.state_path();
    // Held while cleaning, so a task cannot start half-way through.
    let lock = match state_lock::acquire(&state) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let mut failed = false;
    let dest = task.destination.addr.to_string();
    let ckpt_keys: Vec<String> = task.sources.iter().map(|s| task.checkpoint_key(&s.name)).collect();
    let opts = probe::probe_options(&task.destination.password);
    match rt.block_on(shardsync::dest::cleanup::remove_checkpoints(&dest, &opts, &ckpt_keys)) {
        Ok(removed) => {
            let n = removed.keys;
            let on = match removed.masters {
                Some(m) => format!(" and their slots' keys, from {m} cluster masters"),
                None => String::new(),
            };
            println!("destination {dest}: removed {n} checkpoint keys ({}{on})", ckpt_keys.join(", "));
        }
        Err(e) => {
            failed = true;
            eprintln!("error: destination {dest}: checkpoint keys not removed: {e}");
        }
    }
    for s in &task.sources {
        let addr = s.addr.to_string();
        let key = std::slice::from_ref(&task.sync.heartbeat_key);
        match rt.block_on(delete(&addr, &s.password, key)) {
            Ok(n) => println!("source {} ({addr}): removed {n} heartbeat key ({})", s.name, task.sync.heartbeat_key),
            Err(e) => {
                failed = true;
                eprintln!("error: source {} ({addr}): heartbeat key not removed: {e}", s.name);
            }
        }
    }
    drop(lock);
    match std::fs::remove_dir_all(&state) {
        Ok(()) => println!("removed the state dir {}", state.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            failed = true;
            eprintln!("error: the state dir {} not removed: {e}", state.display());
        }
    }
    if failed {
        eprintln!("finish: some of the tool's keys or files remain (above); fix the cause and run finish again");
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// `DEL keys` in DB 0 of `addr`: how many existed.
async fn delete(addr: &str, password: &Secret, keys: &[String]) -> Result<i64, String> {
    let mut conn = probe::connect(addr, &probe::probe_options(password)).await.map_err(|e| e.to_string())?;
    let del = keys.iter().fold(Cmd::new("DEL"), |c, k| c.arg(k));
    match conn.send(&del).await.map_err(|e| e.to_string())? {
        Value::Integer(n) => Ok(n),
        Value::Error(e) => Err(e),
        other => Err(format!("unexpected reply {}", other.kind())),
    }
}

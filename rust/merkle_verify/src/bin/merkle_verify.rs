//! `merkle-verify FILE [--keys PUBKEYS] [--json]`: offline verification of an evidence
//! bundle (JSON) or a `c2sp.org/tlog-proof@v1` file.
//!
//! Exit status: 0 valid, 1 invalid (`INVALID <reason> seq=<n>: <message>`), 2 unusable
//! input (`error: ...`), which includes a `malformed` bundle (docs/formats.md §6).

use std::fs::File;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use merkle_verify::bundle::{verify_bundle, Reason, Verdict, MAX_BUNDLE_BYTES};
use merkle_verify::keys::PublicKeys;
use merkle_verify::tlog_proof::{self, TLOG_PROOF_HEADER};

const USAGE: &str = "usage: merkle-verify FILE [--keys PUBKEYS] [--json]";
/// Public-keys files are a few KiB.
const MAX_KEYS_BYTES: usize = 1 << 20;

/// Exit codes.
const EXIT_VALID: u8 = 0;
const EXIT_INVALID: u8 = 1;
const EXIT_UNUSABLE: u8 = 2;

/// Unusable input: reported as one `error: ...` line, exit 2.
struct Unusable(String);

#[derive(Debug, Default)]
struct Args {
    file: Option<PathBuf>,
    keys: Option<PathBuf>,
    json: bool,
    help: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, Unusable> {
    let mut out = Args::default();
    while let Some(arg) = args.next() {
        if let Some(path) = arg.strip_prefix("--keys=") {
            out.keys = Some(PathBuf::from(path));
            continue;
        }
        match arg.as_str() {
            "--json" => out.json = true,
            "-h" | "--help" => out.help = true,
            "--keys" => {
                let path = args
                    .next()
                    .ok_or_else(|| Unusable("--keys needs a file".into()))?;
                out.keys = Some(PathBuf::from(path));
            }
            s if s.starts_with('-') && s != "-" => {
                return Err(Unusable(format!("unknown option {s}")))
            }
            _ if out.file.is_some() => {
                return Err(Unusable(format!("unexpected argument {arg:?}")))
            }
            _ => out.file = Some(PathBuf::from(arg)),
        }
    }
    Ok(out)
}

/// Reads at most `limit` bytes; a larger file is unusable.
fn read_limited(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, Unusable> {
    let cannot =
        |e: std::io::Error| Unusable(format!("cannot read {what} {}: {e}", path.display()));
    let file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() > limit {
        return Err(Unusable(format!(
            "{what} {} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn load_keys(path: &Path) -> Result<PublicKeys, Unusable> {
    let bytes = read_limited(path, MAX_KEYS_BYTES, "keys file")?;
    PublicKeys::from_json(&bytes)
        .map_err(|e| Unusable(format!("keys file {}: {e}", path.display())))
}

/// Which verifier the file needs.
enum Input {
    Bundle,
    TlogProof,
}

fn detect(bytes: &[u8]) -> Result<Input, Unusable> {
    if bytes.starts_with(TLOG_PROOF_HEADER.as_bytes()) {
        return Ok(Input::TlogProof);
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(Input::Bundle),
        _ => Err(Unusable(format!(
            "not an evidence bundle (JSON object) or a {TLOG_PROOF_HEADER} file"
        ))),
    }
}

fn verify_file(args: &Args, file: &Path) -> Result<Verdict, Unusable> {
    let bytes = read_limited(file, MAX_BUNDLE_BYTES, "file")?;
    let input = detect(&bytes)?;
    let keys = args.keys.as_deref().map(load_keys).transpose()?;
    match input {
        Input::Bundle => Ok(verify_bundle(&bytes, keys.as_ref())),
        Input::TlogProof => {
            let keys = keys.ok_or_else(|| {
                Unusable("a tlog-proof can only be verified with --keys PUBKEYS".into())
            })?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Unusable("tlog-proof is not UTF-8".into()))?;
            Ok(tlog_proof::verify_to_verdict(text, &keys))
        }
    }
}

/// Writes a line, ignoring a closed stdout/stderr (a broken pipe must not panic).
fn out(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn err(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn seq_text(seq: Option<u64>) -> String {
    seq.map_or_else(|| "-".to_owned(), |s| s.to_string())
}

fn report(verdict: &Verdict, json: bool) -> u8 {
    let code = match (verdict.valid, verdict.reason) {
        (true, _) => EXIT_VALID,
        (false, Some(Reason::Malformed)) => EXIT_UNUSABLE,
        (false, _) => EXIT_INVALID,
    };
    if verdict.valid && !verdict.keys_pinned {
        err("warning: no --keys given: verified with the bundle's own keys, which shows the bundle is self-consistent, not who signed it");
    }
    if json {
        match serde_json::to_string(verdict) {
            Ok(text) => out(&text),
            Err(e) => err(&format!("error: cannot serialise verdict: {e}")),
        }
        return code;
    }
    let one_line = verdict.message.replace('\n', " ");
    match code {
        EXIT_VALID => out(&format!(
            "VALID entries={} tree_size={} keys={}: {one_line}",
            verdict.entries_checked,
            verdict
                .tree_size
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            if verdict.keys_pinned {
                "pinned"
            } else {
                "unpinned"
            },
        )),
        EXIT_UNUSABLE => err(&format!(
            "error: malformed seq={}: {one_line}",
            seq_text(verdict.seq)
        )),
        _ => out(&format!(
            "INVALID {} seq={}: {one_line}",
            verdict.reason.map_or("unknown", Reason::as_str),
            seq_text(verdict.seq)
        )),
    }
    code
}

fn run() -> u8 {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(Unusable(msg)) => {
            err(&format!("error: {msg}"));
            err(USAGE);
            return EXIT_UNUSABLE;
        }
    };
    if args.help {
        out(USAGE);
        return EXIT_VALID;
    }
    let Some(file) = args.file.clone() else {
        err(&format!("error: no FILE given; {USAGE}"));
        return EXIT_UNUSABLE;
    };
    match verify_file(&args, &file) {
        Ok(verdict) => report(&verdict, args.json),
        Err(Unusable(msg)) => {
            err(&format!("error: {}", msg.replace('\n', " ")));
            EXIT_UNUSABLE
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn main() -> ExitCode {
    // A bug must still end as one `error:` line and exit 2, never a backtrace.
    panic::set_hook(Box::new(|_| {}));
    let code = panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        err(&format!(
            "error: internal error: {}",
            panic_text(payload.as_ref()).replace('\n', " ")
        ));
        EXIT_UNUSABLE
    });
    ExitCode::from(code)
}

//! `cairn-perf` against a Cairn server that requires tokens, end to end and short: the
//! real `cairn` binary started with an auth token and an admin token, the real harness
//! binary, loopback sockets. With the tokens (flags, or the variables) a run and a soak
//! finish with no error and print no token; without them, or with a wrong one, the
//! harness stops at once, non-zero, with a message naming the token to pass.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const AUTH_TOKEN: &str = "perf-game-token-5a1c9e";
const ADMIN_TOKEN: &str = "perf-admin-token-0d7b33f1";
const AUTH_VARIABLE: &str = "CAIRN_AUTH_TOKEN";
const ADMIN_VARIABLE: &str = "CAIRN_ADMIN_TOKEN";

/// How long one harness command may take before the test calls it hung (a 1 s run or a
/// 5 s soak of the small scenario takes a few seconds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One load test at a time: the machine is small and shared.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("soak-small.toml").to_str().unwrap().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-perf-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The workspace's release `cairn`, as `cairn-perf --spawn` finds it (built if missing).
fn cairn_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target.join("release").join("cairn");
    if !binary.exists() {
        let status = Command::new("cargo")
            .args(["build", "--release", "--bin", "cairn"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --release --bin cairn failed");
    }
    binary
}

/// A `cairn serve` of the test's, with both tokens from the environment; killed on drop.
struct Cairn {
    child: Child,
    addr: String,
}

impl Cairn {
    fn start() -> Cairn {
        let mut child = Command::new(cairn_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
            .env(AUTH_VARIABLE, AUTH_TOKEN)
            .env(ADMIN_VARIABLE, ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cairn starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        // Reads the ready line, then drains stdout so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("cairn listening on ") {
                    let _ = sender.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let addr = receiver.recv_timeout(READY_TIMEOUT).expect("cairn says where it listens");
        Cairn { child, addr }
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one harness command did.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn context(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cairn-perf ARGS` with `env` as the only token variables, failing the test if
/// it does not end within `COMMAND_TIMEOUT` (a hang is a failure, not a wait).
fn harness(name: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let dir = temp_dir(&format!("{name}-streams"));
    let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-perf"));
    command.args(args).env_remove(AUTH_VARIABLE).env_remove(ADMIN_VARIABLE);
    command.envs(env.iter().copied());
    command.stdout(std::fs::File::create(&stdout_path).unwrap());
    command.stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = command.spawn().expect("cairn-perf starts");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn-perf {args:?} did not end within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome = Outcome {
        success: status.success(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// A 1 s open-loop run of the small scenario, writing into `out`.
fn run_args<'a>(scenario: &'a str, out: &'a Path, server: &[&'a str], tokens: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--quiet", "--scenario", scenario, "--out", out.to_str().unwrap()];
    args.extend_from_slice(&["--rate", "2000", "--duration", "1", "--warmup", "0"]);
    args.extend_from_slice(server);
    args.extend_from_slice(tokens);
    args
}

/// Neither token appears in the streams or in any file under `out`.
fn assert_no_token_printed(outcome: &Outcome, out: &Path) {
    for token in [AUTH_TOKEN, ADMIN_TOKEN] {
        assert!(!outcome.stdout.contains(token) && !outcome.stderr.contains(token), "{}", outcome.context());
        for entry in std::fs::read_dir(out).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(token), "{} holds a token", path.display());
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_run_and_a_soak_with_the_tokens_have_no_errors_and_print_no_token() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let scenario = scenario();

    // Flags on one command: the harness spawns cairn with the tokens and presents them.
    let out = temp_dir("run");
    let tokens = ["--auth-token", AUTH_TOKEN, "--admin-token", ADMIN_TOKEN];
    let outcome = harness("run", &run_args(&scenario, &out, &["--spawn"], &tokens), &[]);
    let context = outcome.context();
    assert!(outcome.success, "{context}");
    // The spawned server's own start-up line (its stderr is the harness's) says it
    // requires both tokens, so the run above really presented them.
    assert!(outcome.stderr.contains("cairn: every connection must present the auth token"), "{context}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["errors"], 0, "{context}");
    assert_eq!(summary["validation"], "ok", "{context}");
    assert!(summary["events_acked"].as_u64().unwrap() > 0, "{context}");
    assert_no_token_printed(&outcome, &out);
    let _ = std::fs::remove_dir_all(&out);

    // The variables, on a soak: its STATS sampler, reconnections and churned subscribers
    // all say HELLO with a token. 5 s is too short for every check of the verdict (the
    // connection check wants a clean second in each half), so only the exit status is
    // required to agree with it.
    let out = temp_dir("soak");
    let args = ["soak", "--quiet", "--scenario", &scenario, "--out", out.to_str().unwrap()];
    let args = [&args[..], &["--duration", "5", "--warmup", "0", "--rate", "2000"]].concat();
    let outcome = harness("soak", &args, &[(AUTH_VARIABLE, AUTH_TOKEN), (ADMIN_VARIABLE, ADMIN_TOKEN)]);
    let context = outcome.context();
    let document = json(&out.join("soak.json"));
    assert_eq!(document["errors"], 0, "{context}");
    assert_eq!(document["validation"], "ok", "{context}");
    assert_eq!(document["failures"], serde_json::json!([]), "{context}");
    assert!(document["reconnects"].as_u64().unwrap() > 0, "{context}");
    assert!(document["subscribers_opened"].as_u64().unwrap() > 0, "{context}");
    let seconds = document["seconds"].as_array().unwrap();
    assert!(seconds.iter().all(|second| second["server_open"].as_u64().is_some()), "STATS was read every second");
    let all_ok = document["checks"].as_array().unwrap().iter().all(|check| check["ok"] == true);
    assert_eq!(outcome.success, all_ok, "the exit status follows the verdict\n{context}");
    assert!(!outcome.stderr.contains("refused"), "{context}");
    assert_no_token_printed(&outcome, &out);
    let _ = std::fs::remove_dir_all(&out);
}

/// A refused run: its token flags, its token variables, and what stderr must say.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn a_missing_or_wrong_token_stops_the_harness_with_a_message_naming_it() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let scenario = scenario();
    let cairn = Cairn::start();
    let pid = cairn.child.id().to_string();
    let out = temp_dir("refused");
    let at = ["--addr", cairn.addr.as_str()];
    let wrong = "not-the-right-token-00";
    let cases: [Refusal; 5] = [
        (&[], &[], "refused a HELLO without one (error 13 unauthorized"),
        (&["--auth-token", AUTH_TOKEN], &[], "the server refused CREATE_HUNT, an admin operation (error 14"),
        (&["--auth-token", wrong], &[(ADMIN_VARIABLE, ADMIN_TOKEN)], "the server refused the auth token (error 13"),
        (&["--admin-token", wrong], &[(AUTH_VARIABLE, AUTH_TOKEN)], "the server refused the admin token (error 13"),
        (&["--auth-token", "too-short"], &[], "--auth-token (or CAIRN_AUTH_TOKEN): a token must be 16 to 256 bytes"),
    ];
    for (tokens, env, message) in cases {
        let outcome = harness("refused", &run_args(&scenario, &out, &at, tokens), env);
        let context = format!("{tokens:?} {env:?}\n{}", outcome.context());
        assert!(!outcome.success, "{context}");
        assert!(outcome.stderr.contains(message), "{context}");
        assert!(!outcome.stderr.contains("panicked"), "{context}");
        let hint = if message.contains("admin") { "--admin-token or CAIRN_ADMIN_TOKEN" } else { "CAIRN_AUTH_TOKEN" };
        assert!(outcome.stderr.contains(hint), "{context}");
        assert!(!outcome.stderr.contains(AUTH_TOKEN) && !outcome.stderr.contains(wrong), "{context}");
    }
    // A soak attached to the same server stops the same way.
    let args = ["soak", "--quiet", "--scenario", &scenario, "--out", out.to_str().unwrap(), "--addr", &cairn.addr];
    let args = [&args[..], &["--pid", &pid, "--duration", "5", "--warmup", "0", "--rate", "2000"]].concat();
    let outcome = harness("refused-soak", &args, &[]);
    assert!(!outcome.success, "{}", outcome.context());
    assert!(outcome.stderr.contains("pass --auth-token or CAIRN_AUTH_TOKEN"), "{}", outcome.context());

    // No refusal above left anything behind: every one came before the set-up applied an
    // event (CREATE_HUNT refused with error 14 is not applied).
    let stats = Command::new(cairn_binary())
        .args(["stats", "--json", "--addr", &cairn.addr])
        .env(ADMIN_VARIABLE, ADMIN_TOKEN)
        .output()
        .expect("cairn stats runs");
    assert!(stats.status.success(), "{}", String::from_utf8_lossy(&stats.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["events_total"], 0, "{stats}");
    assert!(stats["admin_refusals"].as_u64().unwrap() > 0, "{stats}");

    // The variables alone get a run through on this shared server.
    let env = [(AUTH_VARIABLE, AUTH_TOKEN), (ADMIN_VARIABLE, ADMIN_TOKEN)];
    let outcome = harness("accepted", &run_args(&scenario, &out, &at, &[]), &env);
    let context = outcome.context();
    assert!(outcome.success, "{context}");
    let summary = json(&out.join("summary.json"));
    assert_eq!(summary["errors"], 0, "{context}");
    assert_eq!(summary["validation"], "ok", "{context}");
    assert_no_token_printed(&outcome, &out);
    let _ = std::fs::remove_dir_all(&out);
}

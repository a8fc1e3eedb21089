//! A cleanup strategy that misbehaves as its config's `mode` asks, so the host's
//! containment can be tested: every way a plugin can go wrong, in one component.

use serde::Deserialize;
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
    /// For `flood`, `notices` and `read-flood`: how many actions or calls;
    /// for `kill-all`, the signal number.
    #[serde(default)]
    count: u32,
    /// For `flood` and `notices`: the length of the one reason every action
    /// shares.
    #[serde(default)]
    reason_bytes: u32,
}

struct Adversary(String, u32, String);

// Scalars only, so the recursion uses the wasm call stack rather than the
// shadow stack in linear memory.
#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "unbounded recursion is the behaviour under test"
)]
fn recurse(depth: u64) -> u64 {
    // `black_box` keeps the call from being turned into a loop.
    recurse(std::hint::black_box(depth + 1)).wrapping_add(depth)
}

impl CleanupStrategy for Adversary {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        if config.mode == "panic-in-init" {
            panic!("adversary refuses to start");
        }
        let reason = if config.reason_bytes == 0 {
            "flood".to_owned()
        } else {
            "r".repeat(config.reason_bytes as usize)
        };
        Ok(Adversary(config.mode, config.count, reason))
    }

    fn plan(&self, ctx: &CleanupContext) -> warden_sdk::Result<Plan> {
        let mut plan = Plan::new();
        match self.0.as_str() {
            "infinite-loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "allocate-1gib" => {
                let v = vec![1u8; 1 << 30];
                warden_sdk::info!("allocated {}", std::hint::black_box(&v).len());
            }
            "unbounded-recursion" => {
                warden_sdk::info!("depth {}", recurse(0));
            }
            "panic" => panic!("adversary panics on purpose"),
            "ten-million-actions" => {
                for _ in 0..10_000_000 {
                    plan.notify("", "flood");
                }
            }
            "flood" | "notices" => {
                // Built raw: one reason, listed once, that every action
                // points at (the SDK would compare it with itself per action).
                use warden_sdk::__bindings::cleanup::exports::warden::policy::cleanup as raw;
                // Columns (WIT 0.2.0): kind 0 is `delete-path` of candidate
                // 0; kind 5 is `notify`, each with a message of its own.
                let n = self.1 as usize;
                let (kind, targets, messages) = if self.0 == "flood" {
                    ctx.candidates().get(0).expect("a candidate");
                    (0u8, vec![0; n], Vec::new())
                } else {
                    (
                        5u8,
                        (0..n as u32).collect(),
                        vec!["look at me".to_owned(); n],
                    )
                };
                return Ok(from_raw(raw::CleanupPlan {
                    reasons: vec![self.2.clone()],
                    kinds: vec![kind; n],
                    targets,
                    signals: vec![0; n],
                    because: vec![0; n],
                    messages,
                }));
            }
            "read-flood" => {
                // Reads everything there is, over and over: what one
                // evaluation may read is bounded, and the call past the
                // bound is refused with a reason this plugin reports.
                let mut samples = 0usize;
                let mut resources = 0usize;
                for _ in 0..self.1.max(1) {
                    let all = warden_sdk::series::query(
                        "flood",
                        &[],
                        std::time::Duration::from_secs(365 * 86_400),
                    )?;
                    samples += all.iter().map(|s| s.samples().len()).sum::<usize>();
                    resources += warden_sdk::resources::list(Default::default())?.len();
                }
                warden_sdk::info!("read {samples} samples and {resources} resources");
            }
            "print" => {
                println!("to stdout from the plugin");
                eprintln!("to stderr from the plugin");
                warden_sdk::warn!("through the host log");
            }
            "error" => return Err("adversary reports an error".into()),
            "escape" => {
                // Tries every way out of the sandbox and reports what it got.
                let fs = std::fs::read_dir("/")
                    .map(|d| d.count())
                    .map_err(|e| e.kind());
                let file = std::fs::read_to_string("/etc/passwd")
                    .map(|s| s.len())
                    .map_err(|e| e.kind());
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let net = std::net::TcpStream::connect("127.0.0.1:9")
                    .map(|_| ())
                    .map_err(|e| e.kind());
                return Err(
                    format!("fs={fs:?} file={file:?} env={env} args={args} net={net:?}").into(),
                );
            }
            "list-sockets" => {
                // Registered sockets, then the listeners watched processes
                // hold: what a test can pin down while tests beside it open
                // and close connections by the thousand.
                let filter = warden_sdk::resources::Filter {
                    kinds: vec![warden_sdk::resources::ResourceKind::Socket],
                    ..Default::default()
                };
                let listed = warden_sdk::resources::list(filter)?;
                for r in listed
                    .iter()
                    .filter(|r| r.label("state").is_none_or(|s| s == "listen"))
                {
                    plan.notify(
                        &format!("{} {} {:?}", r.name(), r.owner(), r.label("state")),
                        "listed",
                    );
                }
            }
            "list" => {
                let filter = warden_sdk::resources::Filter {
                    kinds: vec![warden_sdk::resources::ResourceKind::AppObject],
                    ..Default::default()
                };
                for r in warden_sdk::resources::list(filter)?.iter() {
                    plan.notify(
                        &format!("{} {} {:?}", r.name(), r.owner(), r.label("pool")),
                        "listed",
                    );
                }
            }
            "delete-all" => {
                for r in ctx.candidates().iter() {
                    plan.delete(&r, "asked to delete everything");
                }
            }
            "kill-all" => {
                // `count` is the signal number.
                for r in ctx.candidates().iter() {
                    plan.kill(&r, self.1 as i32, "asked to signal everything");
                }
            }
            "bad-index" => {
                plan.delete(&ctx.candidates().get(0).expect("a candidate"), "fine");
                let n = ctx.candidates().len() as u32;
                let mut raw = plan.clone().into_raw();
                raw.targets[0] = n + 5;
                return Ok(from_raw(raw));
            }
            "bad-columns" => {
                // One action code more than targets: a plan the host cannot read.
                plan.delete(&ctx.candidates().get(0).expect("a candidate"), "fine");
                let mut raw = plan.clone().into_raw();
                raw.kinds.push(0);
                return Ok(from_raw(raw));
            }
            "bad-code" => {
                plan.delete(&ctx.candidates().get(0).expect("a candidate"), "fine");
                let mut raw = plan.clone().into_raw();
                raw.kinds[0] = 9;
                return Ok(from_raw(raw));
            }
            other => return Err(format!("unknown mode `{other}`").into()),
        }
        Ok(plan)
    }
}

fn from_raw(
    raw: warden_sdk::__bindings::cleanup::exports::warden::policy::cleanup::CleanupPlan,
) -> Plan {
    Plan::from_raw_unchecked(raw)
}

warden_sdk::register_cleanup!(Adversary);

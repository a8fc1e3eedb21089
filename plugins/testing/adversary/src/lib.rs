//! A cleanup strategy that misbehaves as its config's `mode` asks, so the host's
//! containment can be tested: every way a plugin can go wrong, in one component.

use serde::Deserialize;
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
}

struct Adversary(String);

#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "unbounded recursion is the behaviour under test"
)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    // `black_box` keeps the frame from being optimised into a loop.
    recurse(std::hint::black_box(depth + 1), std::hint::black_box(pad)) + u64::from(pad[0])
}

impl CleanupStrategy for Adversary {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        if config.mode == "panic-in-init" {
            panic!("adversary refuses to start");
        }
        Ok(Adversary(config.mode))
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
                let mut pad = [0u8; 256];
                warden_sdk::info!("depth {}", recurse(0, &mut pad));
            }
            "panic" => panic!("adversary panics on purpose"),
            "ten-million-actions" => {
                for _ in 0..10_000_000 {
                    plan.notify("", "flood");
                }
            }
            "print" => {
                println!("to stdout from the plugin");
                eprintln!("to stderr from the plugin");
                warden_sdk::warn!("through the host log");
            }
            "error" => return Err("adversary reports an error".into()),
            "delete-all" => {
                for r in ctx.candidates().iter() {
                    plan.delete(&r, "asked to delete everything");
                }
            }
            "bad-index" => {
                plan.delete(&ctx.candidates().get(0).expect("a candidate"), "fine");
                let n = ctx.candidates().len() as u32;
                let raw = plan.clone().into_raw();
                let mut raw = raw;
                raw.actions[0].action =
                    warden_sdk::__bindings::cleanup::exports::warden::policy::cleanup::Action::DeletePath(n + 5);
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

//! coinctl: argument grammar, one module per command group, and the two output renderings.

pub mod account;
pub mod args;
pub mod cluster;
pub mod money;
pub mod output;
pub mod rates;
pub mod text;

use std::process::ExitCode;

use coinledger_client::{Client, ClientConfig, ClientError};
use serde_json::Value;

use args::{Args, Command};

/// A command's result in both renderings; `ok: false` exits 1 after printing (audit).
pub struct Rendered {
    pub json: Value,
    pub text: String,
    pub ok: bool,
}

impl Rendered {
    pub fn new(json: Value, text: String) -> Rendered {
        Rendered {
            json,
            text,
            ok: true,
        }
    }
}

/// Runs the command and prints the result; the exit code is 0 on success, 1 on any error.
pub async fn run(args: Args) -> ExitCode {
    let json = args.json;
    match execute(args).await {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r.json).unwrap_or_default()
                );
            } else {
                println!("{}", r.text);
            }
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if json {
                println!("{}", output::error(&e));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(1)
        }
    }
}

async fn execute(args: Args) -> Result<Rendered, ClientError> {
    let mut config = ClientConfig::from_endpoints(&args.endpoints)?;
    config.deadline_ms = args.timeout_ms;
    // A short overall deadline must still allow one whole attempt.
    config.attempt_timeout_ms = config.attempt_timeout_ms.min(args.timeout_ms.max(1));
    // One call per process: a topology would arrive after it, so routing would only cost an
    // extra RPC.
    config.routing = false;
    let client = Client::connect(config)?;
    match args.command {
        Command::Purchase(a) => money::purchase(&client, a).await,
        Command::Gift(a) => money::gift(&client, a).await,
        Command::Cashout(a) => money::cashout(&client, a).await,
        Command::Payout(a) => money::payout(&client, a).await,
        Command::Refund(a) => money::refund(&client, a).await,
        Command::Balance(a) => account::balance(&client, a).await,
        Command::History(a) => account::history(&client, a).await,
        Command::Account(a) => account::admin(&client, a).await,
        Command::Rates(a) => rates::rates(&client, a).await,
        Command::Gifts => rates::gifts(&client).await,
        Command::Status => cluster::status(&client).await,
        Command::Audit => cluster::audit(&client).await,
    }
}

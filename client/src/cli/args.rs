//! Command-line grammar (clap derive). Every command's help says what it does and its units.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// The three nodes `coinledger-cluster up` starts on loopback.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// coinctl: talk to a coinledger cluster. Coins and diamonds are whole numbers; fiat amounts
/// are decimal strings in an ISO 4217 currency ("9.99" USD). Mutating commands are idempotent
/// per request id: after a TIMEOUT, run the command again with the --request-id it printed.
#[derive(Parser, Debug)]
#[command(
    name = "coinctl",
    version,
    after_help = "Load test and conservation check: coinctl bench --help"
)]
pub struct Args {
    /// Comma-separated gRPC endpoints of any nodes ("host:port"); leaders are found from there.
    #[arg(long, env = "COINLEDGER_ENDPOINTS", default_value = DEFAULT_ENDPOINTS, global = true)]
    pub endpoints: String,
    /// Print JSON on stdout (errors too) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Overall deadline of the call in milliseconds, retries included.
    #[arg(long, default_value_t = 15_000, global = true, value_name = "MS")]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Credit coins for a real-money payment at the published price (once per payment ref).
    Purchase(PurchaseArgs),
    /// Spend FROM's coins on a catalog gift; TO (the creator) is credited diamonds.
    Gift(GiftArgs),
    /// Hold a creator's diamonds for a fiat payout; finish it with `payout post|void`.
    Cashout(CashoutArgs),
    /// Finish a cash-out: post (the provider paid) or void (it failed, diamonds returned).
    #[command(subcommand)]
    Payout(PayoutCommand),
    /// Charge back a purchase: claw back its coins as far as the wallet holds them.
    Refund(RefundArgs),
    /// Show an account's coins, diamonds (total, held, available), frozen flag and limit.
    Balance(AccountArg),
    /// Show an account's statement, newest first, one page at a time.
    History(HistoryArgs),
    /// Show the rate card in force (prices in fiat per coin, shares and fees in basis points),
    /// or publish a new one with `rates set`.
    Rates(RatesArgs),
    /// List the gift catalog (prices in coins).
    Gifts,
    /// Admin: spending limits and freezing of an account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Show the answering node's view: nodes, its raft log's size, its work counters since
    /// it started (raft entries, Readies, group commits, state flushes, peer messages), and
    /// per shard the role, leader, term, raft commit and applied indexes and pending
    /// cross-shard effects.
    Status,
    /// Check coin and diamond conservation over every shard; exits 1 if it does not hold.
    Audit,
}

/// The idempotency key of a mutating command. Default: a fresh random id (printed).
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct RequestIdArg {
    /// Request id (1..=64 chars of [A-Za-z0-9._:-]); reuse it to retry an unknown outcome.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

impl RequestIdArg {
    /// The given id, or a fresh one chosen now so it can be printed with the result.
    pub fn or_new(&self) -> String {
        self.request_id
            .clone()
            .unwrap_or_else(coinledger_client::Client::new_request_id)
    }
}

#[derive(ClapArgs, Debug)]
pub struct PurchaseArgs {
    /// The account credited (opened on first use).
    pub account: String,
    /// Fiat amount paid, a decimal such as 9.99 (at most the currency's minor units).
    #[arg(long, value_parser = parse_fiat)]
    pub amount: String,
    /// ISO 4217 currency of the amount.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// The payment provider's reference; it can credit at most once, for ever.
    #[arg(long, value_name = "REF")]
    pub payment_ref: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(ClapArgs, Debug)]
pub struct GiftArgs {
    /// Sender, who pays coins.
    pub from: String,
    /// Recipient creator, credited diamonds.
    pub to: String,
    /// Gift id from the catalog (`coinctl gifts`).
    #[arg(long = "gift", value_name = "GIFT")]
    pub gift_id: String,
    /// Number of gifts (1..=max_gift_quantity of the rate card).
    #[arg(long, default_value_t = 1)]
    pub quantity: u32,
    /// Optional personal message (at most max_message_chars characters).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub message: String,
    /// Optional live-stream id the gift is sent in.
    #[arg(long = "stream", value_name = "ID", default_value = "")]
    pub stream_id: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(ClapArgs, Debug)]
pub struct CashoutArgs {
    /// The creator cashing out.
    pub account: String,
    /// Diamonds to cash out (at least the published minimum, at most the available diamonds).
    #[arg(long)]
    pub diamonds: u64,
    /// Payout currency (ISO 4217) with a published cash-out rate.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(Subcommand, Debug)]
pub enum PayoutCommand {
    /// The payout provider paid: the held diamonds leave the ledger.
    Post(PayoutArgs),
    /// The payout failed: the held diamonds return to the creator's available balance.
    Void(PayoutArgs),
}

#[derive(ClapArgs, Debug)]
pub struct PayoutArgs {
    /// Payout id printed by `cashout`, e.g. po-3-1042-0.
    pub payout_id: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(ClapArgs, Debug)]
pub struct RefundArgs {
    /// Payment reference of the purchase to charge back.
    pub payment_ref: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(ClapArgs, Debug)]
pub struct AccountArg {
    /// Account id.
    pub account: String,
}

#[derive(ClapArgs, Debug)]
pub struct HistoryArgs {
    /// Account id.
    pub account: String,
    /// Entries per page, 1..=500 (default 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Cursor printed by the previous page, for the next (older) page.
    #[arg(long, value_name = "C", default_value = "")]
    pub cursor: String,
}

#[derive(ClapArgs, Debug)]
pub struct RatesArgs {
    #[command(subcommand)]
    pub action: Option<RatesAction>,
}

#[derive(Subcommand, Debug)]
pub enum RatesAction {
    /// Admin: publish a rate card from a JSON file in the shape `rates --json` prints; its
    /// version must be exactly the current version + 1 (effective_ms is ignored).
    Set(RatesSetArgs),
}

#[derive(ClapArgs, Debug)]
pub struct RatesSetArgs {
    /// Path of the JSON rate card.
    pub file: PathBuf,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Set the account's minor flag and daily purchase cap (UTC day), replacing both; without
    /// --daily-cap the cap is removed. An account with a cap can only buy in its currency.
    SetLimit(SetLimitArgs),
    /// Freeze the account: it can no longer buy, send gifts or cash out (it can still receive).
    Freeze(FreezeArgs),
    /// Unfreeze the account.
    Unfreeze(FreezeArgs),
}

#[derive(ClapArgs, Debug)]
pub struct SetLimitArgs {
    /// Account id (opened if needed).
    pub account: String,
    /// Mark the account as a minor's.
    #[arg(long)]
    pub minor: bool,
    /// Daily purchase cap, a fiat decimal such as 20.00.
    #[arg(long, value_parser = parse_fiat, value_name = "AMOUNT")]
    pub daily_cap: Option<String>,
    /// Currency of the daily cap (ISO 4217).
    #[arg(long, default_value = "USD", requires = "daily_cap")]
    pub currency: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

#[derive(ClapArgs, Debug)]
pub struct FreezeArgs {
    /// Account id.
    pub account: String,
    #[command(flatten)]
    pub id: RequestIdArg,
}

/// A positive plain decimal ("9.99"): digits and at most one point, no sign or exponent, as
/// the API requires. The node checks the currency's minor units; this catches typos early.
pub fn parse_fiat(s: &str) -> Result<String, String> {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.matches('.').count() <= 1;
    let positive = s
        .parse::<rust_decimal::Decimal>()
        .map(|d| d > rust_decimal::Decimal::ZERO);
    match (plain, positive) {
        (true, Ok(true)) => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a positive decimal amount such as 9.99"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("coinctl").chain(args.iter().copied()))
    }

    #[test]
    fn purchase() {
        let a = parse(&[
            "purchase",
            "alice",
            "--amount",
            "9.99",
            "--currency",
            "EUR",
            "--payment-ref",
            "p1",
        ])
        .unwrap();
        assert_eq!(a.endpoints, DEFAULT_ENDPOINTS);
        assert_eq!(a.timeout_ms, 15_000);
        let Command::Purchase(p) = a.command else {
            panic!("{:?}", a.command)
        };
        assert_eq!(
            (p.account.as_str(), p.amount.as_str(), p.currency.as_str()),
            ("alice", "9.99", "EUR")
        );
        assert_eq!(p.payment_ref, "p1");
        assert_eq!(p.id.request_id, None);
    }

    #[test]
    fn bad_amounts_are_usage_errors() {
        for amount in ["0", "-1", "1e3", "1.2.3", "abc", ""] {
            let e =
                parse(&["purchase", "a", "--amount", amount, "--payment-ref", "p"]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{amount}");
        }
    }

    #[test]
    fn gift_with_globals_anywhere() {
        let a = parse(&[
            "gift",
            "alice",
            "bob",
            "--gift",
            "rose",
            "--quantity",
            "3",
            "--json",
            "--request-id",
            "r1",
            "--endpoints",
            "n1:1",
            "--timeout-ms",
            "500",
        ])
        .unwrap();
        assert!(a.json);
        assert_eq!((a.endpoints.as_str(), a.timeout_ms), ("n1:1", 500));
        let Command::Gift(g) = a.command else {
            panic!()
        };
        assert_eq!(
            (
                g.from.as_str(),
                g.to.as_str(),
                g.gift_id.as_str(),
                g.quantity
            ),
            ("alice", "bob", "rose", 3)
        );
        assert_eq!(g.id.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn nested_commands() {
        assert!(matches!(
            parse(&["payout", "post", "po-1"]).unwrap().command,
            Command::Payout(PayoutCommand::Post(_))
        ));
        assert!(matches!(
            parse(&["payout", "void", "po-1"]).unwrap().command,
            Command::Payout(PayoutCommand::Void(_))
        ));
        let Command::Rates(r) = parse(&["rates"]).unwrap().command else {
            panic!()
        };
        assert!(r.action.is_none());
        let Command::Rates(r) = parse(&["rates", "set", "card.json"]).unwrap().command else {
            panic!()
        };
        assert!(matches!(r.action, Some(RatesAction::Set(_))));
        let a = parse(&[
            "account",
            "set-limit",
            "kid",
            "--minor",
            "--daily-cap",
            "20.00",
            "--currency",
            "EUR",
        ]);
        let Command::Account(AccountCommand::SetLimit(l)) = a.unwrap().command else {
            panic!()
        };
        assert!(l.minor);
        assert_eq!(
            (l.daily_cap.as_deref(), l.currency.as_str()),
            (Some("20.00"), "EUR")
        );
        assert!(parse(&["account", "freeze", "a"]).is_ok());
        assert!(parse(&["history", "a", "--limit", "10", "--cursor", "c1"]).is_ok());
        assert!(parse(&["cashout", "bob", "--diamonds", "1000"]).is_ok());
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            parse(&["history", "a", "--limit", "501"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(parse(&["cashout", "bob"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(&["account", "set-limit", "a", "--currency", "EUR"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(parse(&["nope"]).unwrap_err().exit_code(), 2);
    }
}

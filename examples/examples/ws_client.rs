//! A WebSocket client that subscribes, prints ticks, checks `seq` continuity, and resumes
//! without loss after a dropped connection.
//!
//! Run the feed (`cargo run --release`), then:
//!
//! ```sh
//! cargo run -p examples --example ws_client -- ws://127.0.0.1:8080/ws 'NASDAQ:*' FX:EUR/USD
//! ```

use std::{collections::HashMap, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/ws".to_owned());
    let symbols: Vec<String> = {
        let rest: Vec<String> = args.collect();
        if rest.is_empty() { vec!["*".to_owned()] } else { rest }
    };
    // What we have seen, per symbol, and in which epoch: enough to resume exactly.
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut epoch: Option<String> = None;
    loop {
        match stream(&url, &symbols, &mut last_seq, &mut epoch).await {
            Ok(()) => return,
            Err(err) => {
                eprintln!("connection lost ({err}); resuming in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn stream(
    url: &str,
    symbols: &[String],
    last_seq: &mut HashMap<String, u64>,
    epoch: &mut Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut ws, _) = connect_async(url).await?;
    let mut subscribe = json!({"op": "subscribe", "symbols": symbols, "id": 1});
    if let Some(epoch) = epoch.as_ref().filter(|_| !last_seq.is_empty()) {
        // Resume: the server replays what we missed from its history, or says `reset`.
        subscribe["since"] = json!(last_seq);
        subscribe["epoch"] = json!(epoch);
    }
    ws.send(Message::text(subscribe.to_string())).await?;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else { continue };
        let value: Value = serde_json::from_str(&text)?;
        match value["type"].as_str() {
            Some("welcome") => *epoch = value["epoch"].as_str().map(str::to_owned),
            Some("tick") => {
                let symbol = value["symbol"].as_str().unwrap_or_default().to_owned();
                let seq = value["seq"].as_u64().unwrap_or_default();
                let previous = last_seq.insert(symbol.clone(), seq);
                let flags = if value.get("conflated").is_some() {
                    " (conflated: older ticks skipped)"
                } else if value.get("snapshot").is_some() {
                    " (snapshot)"
                } else if previous.is_some_and(|p| p + 1 != seq) {
                    " (GAP!)"
                } else {
                    ""
                };
                println!("{symbol:<20} seq {seq:>8} price {}{flags}", value["price"]);
            }
            Some("reset") => {
                let symbol = value["symbol"].as_str().unwrap_or_default();
                println!("{symbol:<20} reset: history no longer reaches, a snapshot follows");
                last_seq.remove(symbol);
                *epoch = value["epoch"].as_str().map(str::to_owned);
            }
            Some("error") => eprintln!("server error: {value}"),
            _ => {}
        }
    }
    Ok(())
}

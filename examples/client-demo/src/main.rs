//! Run with: `scripts/serve.sh` in one terminal, then
//! `cargo run -p client-demo` in another (optionally with the URL, default
//! `ws://127.0.0.1:8080/ws`).
//!
//! Connects with `switchyard-client`, subscribes to the registry's `status`
//! events, calls the `clock` and `calculator` plugins and prints the
//! replies. Leave it running and drop a plugin into the plugin folder to
//! see a status event; Ctrl-C to stop.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use serde_json::json;
    use switchyard_client::{Client, ClientError};

    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let client = Client::connect(&url).await?;
    println!("connected to {url}");

    client.on("status", |event| println!("status event: {}", event["data"]));
    let subscribed = client.subscribe(["status"], json!({})).await?;
    println!("subscribed: {subscribed}");

    let time = client.request("get_time", json!({})).await?;
    println!("get_time: {time}");

    let quotient = client.request("calculate", json!({"a": 6, "b": 3, "op": "/"})).await?;
    println!("calculate 6 / 3: {quotient}");

    match client.request("calculate", json!({"a": 6, "b": 0, "op": "/"})).await {
        Err(ClientError::Remote { code, message }) => println!("calculate 6 / 0: {code} ({message})"),
        other => println!("calculate 6 / 0: {other:?}"),
    }

    println!("waiting for status events; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    client.close().await;
    Ok(())
}

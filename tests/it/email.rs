//! Emails over real SMTP (a minimal sink server here): the verification code,
//! the welcome, and order notifications to the customer's account address.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

/// Accepts every message and keeps its DATA (headers and body).
#[derive(Clone, Default)]
struct SmtpSink {
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    async fn start() -> (SmtpSink, String) {
        let sink = SmtpSink::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let messages = sink.messages.clone();
        // Its own thread and runtime: the worker's shutdown may still talk SMTP
        // (a pooled connection's QUIT) while the test's runtime is blocked joining
        // the worker thread; on that runtime the sink would never answer.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let messages = messages.clone();
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut lines = BufReader::new(read).lines();
                        let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                        let mut data: Option<String> = None;
                        while let Ok(Some(line)) = lines.next_line().await {
                            if let Some(buf) = data.as_mut() {
                                if line == "." {
                                    messages.lock().unwrap().push(data.take().unwrap_or_default());
                                    let _ = write.write_all(b"250 queued\r\n").await;
                                } else {
                                    buf.push_str(&line);
                                    buf.push('\n');
                                }
                                continue;
                            }
                            let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                            let reply: &[u8] = match verb.as_str() {
                                "DATA" => {
                                    data = Some(String::new());
                                    b"354 go ahead\r\n"
                                }
                                "QUIT" => {
                                    let _ = write.write_all(b"221 bye\r\n").await;
                                    break;
                                }
                                _ => b"250 ok\r\n",
                            };
                            let _ = write.write_all(reply).await;
                        }
                    });
                }
            });
        });
        (sink, url)
    }

    async fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages.lock().unwrap().iter().find(|m| m.contains(what)) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "no email containing {what:?}: {:?}", self.messages.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn account_and_order_emails_go_out_over_smtp() {
    let (sink, url) = SmtpSink::start().await;
    let app = spawn_app_with_worker_and(&[("ORDERS_SMTP_URL", url.as_str()), FAST_CARRIER[0], FAST_CARRIER[1]]).await;

    let user: Value = app
        .http
        .post(format!("{}/users", app.address))
        .json(&json!({"email": "ada@example.com", "name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let mail = sink.wait_for("Your code:").await;
    assert!(mail.contains("ada@example.com"), "{mail}");
    let code: String = mail.split("Your code: ").nth(1).unwrap().chars().take(6).collect();
    let resp = app
        .http
        .post(format!("{}/users/{user_id}/verify", app.address))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    sink.wait_for("Welcome").await;

    // An order of that user: each status change is emailed to their address.
    let token = app.customer(&user_id);
    let id = app.place_order(&token, &widgets(1)).await;
    app.wait_for_status(&token, &id, "delivered").await;
    let delivered = sink.wait_for("Status: delivered").await;
    assert!(delivered.contains("ada@example.com") && delivered.contains(&id), "{delivered}");
    let order_mails = sink.messages.lock().unwrap().iter().filter(|m| m.contains(&id)).count();
    assert_eq!(order_mails, 6, "one per timeline event");
}

//! A small, real SMTP server for tests: it speaks the protocol over TCP (greeting, EHLO/HELO,
//! MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and keeps every message it
//! accepted, so a test checks what a mail server would have received. It can be stopped (the
//! port refuses connections) and started again on the same port, to test outages.

use std::net::SocketAddr;

use mail_parser::MimeHeaders as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as transmitted (headers and body, dot-unstuffed).
    pub data: String,
}

impl ReceivedMail {
    fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default().parse(self.data.as_bytes())
    }

    /// The raw value of the first header called `name` (case-insensitive), unfolded and
    /// trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    current.push(' ');
                    current.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The names of every header, in order (to check that nothing was injected).
    pub fn header_names(&self) -> Vec<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n")
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| line.split_once(':').map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The decoded subject.
    pub fn subject(&self) -> Option<String> {
        self.parsed()?.subject().map(str::to_owned)
    }

    /// The decoded `text/plain` part.
    pub fn text_part(&self) -> Option<String> {
        self.part_of_type("plain")
    }

    /// The decoded `text/html` part.
    pub fn html_part(&self) -> Option<String> {
        self.part_of_type("html")
    }

    fn part_of_type(&self, subtype: &str) -> Option<String> {
        let message = self.parsed()?;
        message.parts.iter().find_map(|part| {
            let content_type = part.content_type()?;
            let is_text = content_type.ctype().eq_ignore_ascii_case("text")
                && content_type
                    .subtype()
                    .is_some_and(|sub| sub.eq_ignore_ascii_case(subtype));
            if !is_text {
                return None;
            }
            part.text_contents().map(str::to_owned)
        })
    }
}

/// The running server.
#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let addr = listener.local_addr().expect("smtp address");
        let server = Self {
            addr,
            received: Arc::default(),
            sessions: Arc::default(),
            acceptor: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its URL for `SMTP_URL` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.received.lock().expect("smtp lock").clone()
    }

    /// Waits until at least `n` messages arrived, within `deadline`.
    pub async fn wait_for_messages(&self, n: usize, deadline: Duration) -> Vec<ReceivedMail> {
        crate::wait_until(&format!("{n} emails"), deadline, || async {
            self.messages().len() >= n
        })
        .await;
        self.messages()
    }

    /// Stops listening and drops every open session: the port refuses connections.
    pub fn stop(&self) {
        if let Some(acceptor) = self.acceptor.lock().expect("smtp lock").take() {
            acceptor.abort();
        }
        for session in self.sessions.lock().expect("smtp lock").drain(..) {
            session.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        self.stop();
        // The aborted acceptor may not have released the port yet: retry until it has.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) if std::time::Instant::now() >= deadline => {
                    panic!("cannot listen on {} again within 30 s: {err}", self.addr)
                }
                Err(_) => tokio::task::yield_now().await,
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let received = self.received.clone();
        let sessions = self.sessions.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let session = tokio::spawn(session(stream, received.clone()));
                sessions.lock().expect("smtp lock").push(session);
            }
        });
        *self.acceptor.lock().expect("smtp lock") = Some(acceptor);
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One SMTP session.
async fn session(stream: TcpStream, received: Arc<Mutex<Vec<ReceivedMail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut from = String::new();
    let mut to = Vec::new();
    if write
        .write_all(b"220 test-smtp ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-test-smtp greets you\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n",
            "HELO" => b"250 test-smtp\r\n",
            "MAIL" => {
                from = address_of(command);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(address_of(command));
                b"250 OK\r\n"
            }
            "DATA" => {
                if write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let Some(data) = read_data(&mut lines).await else {
                    return;
                };
                received.lock().expect("smtp lock").push(ReceivedMail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK: queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            }
            _ => b"502 Command not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The address in `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address_of(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// The message after `DATA`, up to the line holding a single dot; leading dots unstuffed.
async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == ".\r\n" || line == ".\n" {
            return Some(data);
        }
        let unstuffed = line.strip_prefix('.').unwrap_or(&line);
        data.push_str(unstuffed);
    }
}

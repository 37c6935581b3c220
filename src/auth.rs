//! Authentication with a shared token, by challenge and response, so the token itself never crosses the wire.
//!
//! Each side of a connection sends a fresh random [`Nonce`] in its hello. When the server has a token, the client
//! must answer with a proof, HMAC-SHA256(token, client nonce ‖ server nonce); a proof recorded from an earlier
//! connection is worthless, because the server's nonce is new every time. Both sides also derive a
//! [`SessionKey`] from the token and the two nonces. Every bulk transfer ticket the session is given is bound to
//! that key: a bulk connection or UDP session must present the ticket with its [`TicketProof`], which only the
//! session that asked for the ticket can compute. Without a token the key is derived from the nonces alone: that
//! still keeps one session's tickets from working for another, but proves nothing about who is connecting (a
//! token is required for any server that listens beyond loopback).
//!
//! Only this module uses HMAC; the labels keep each use of the key apart.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const CLIENT_PROOF: &[u8] = b"tandem auth v1: client proof";
const SESSION_KEY: &[u8] = b"tandem auth v1: session key";
const TICKET_PROOF: &[u8] = b"tandem auth v1: ticket proof";

/// A fresh random value each side sends in its hello.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 32]);

impl Nonce {
    pub fn random() -> Self {
        Nonce(rand::random())
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The shared secret. Never printed: its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from a flag, the environment or the configuration file; it must not be empty.
    pub fn new(text: &str, source: &str) -> Result<Token> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Malformed {
                what: "token",
                reason: format!("the token from {source} is empty; give a non-empty secret"),
            });
        }
        Ok(Token(text.to_string()))
    }

    /// A fresh random token: 32 letters and digits (about 190 bits), for `tandem serve --generate-token`.
    pub fn generate() -> Token {
        use rand::Rng;
        let text: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
        Token(text)
    }

    /// Its length in characters.
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Never true: an empty token is refused when made.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, to show the user a generated token once.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(hidden)")
    }
}

/// The client's answer to the server's challenge.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof(pub [u8; 32]);

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Proof(…)")
    }
}

/// Shows that a bulk connection or UDP session comes from the session its ticket was issued to.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketProof(pub [u8; 16]);

impl fmt::Debug for TicketProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketProof(…)")
    }
}

/// The client's proof that it holds `token`, for this pair of nonces.
pub fn client_proof(token: &Token, client: &Nonce, server: &Nonce) -> Proof {
    Proof(mac(token.0.as_bytes(), &[CLIENT_PROOF, &client.0, &server.0]).finalize().into_bytes().into())
}

/// Whether `proof` is right for `token` and these nonces; compared in constant time.
pub fn verify_client_proof(token: &Token, client: &Nonce, server: &Nonce, proof: &Proof) -> bool {
    mac(token.0.as_bytes(), &[CLIENT_PROOF, &client.0, &server.0]).verify_slice(&proof.0).is_ok()
}

/// A key both ends of one control connection derive; it never crosses the wire.
#[derive(Clone, Copy)]
pub struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(hidden)")
    }
}

impl SessionKey {
    /// The key of a connection with these nonces, under `token` if the server has one.
    pub fn derive(token: Option<&Token>, client: &Nonce, server: &Nonce) -> SessionKey {
        let secret = token.map_or(&[][..], |t| t.0.as_bytes());
        SessionKey(mac(secret, &[SESSION_KEY, &client.0, &server.0]).finalize().into_bytes().into())
    }

    /// The proof that goes with `ticket` when this session redeems it.
    pub fn ticket_proof(&self, ticket: Ticket) -> TicketProof {
        let full: [u8; 32] = mac(&self.0, &[TICKET_PROOF, &ticket.0.to_be_bytes()]).finalize().into_bytes().into();
        let mut proof = [0u8; 16];
        proof.copy_from_slice(&full[..16]);
        TicketProof(proof)
    }

    /// Whether `proof` shows `ticket` is presented by this session; compared in constant time.
    pub fn verifies(&self, ticket: Ticket, proof: &TicketProof) -> bool {
        mac(&self.0, &[TICKET_PROOF, &ticket.0.to_be_bytes()]).verify_truncated_left(&proof.0).is_ok()
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_token_and_nonces() {
        let token = Token::new("correct horse", "test").unwrap();
        let (client, server) = (Nonce::random(), Nonce::random());
        let proof = client_proof(&token, &client, &server);
        assert!(verify_client_proof(&token, &client, &server, &proof));
        let wrong = Token::new("battery staple", "test").unwrap();
        assert!(!verify_client_proof(&wrong, &client, &server, &proof));
        // A replay: the same proof against a new server nonce.
        assert!(!verify_client_proof(&token, &client, &Nonce::random(), &proof));
        assert!(Token::new("  ", "--token").unwrap_err().to_string().contains("--token is empty"));
        assert_eq!(format!("{token:?}"), "Token(hidden)");
    }

    #[test]
    fn a_ticket_proof_holds_only_for_its_session_and_ticket() {
        let token = Token::new("s3cret", "test").unwrap();
        let (a, b, server) = (Nonce::random(), Nonce::random(), Nonce::random());
        let mine = SessionKey::derive(Some(&token), &a, &server);
        let other = SessionKey::derive(Some(&token), &b, &server);
        let proof = mine.ticket_proof(Ticket(42));
        assert!(mine.verifies(Ticket(42), &proof));
        assert!(!mine.verifies(Ticket(43), &proof));
        assert!(!other.verifies(Ticket(42), &proof));
        // Without a token, sessions are still kept apart.
        let anonymous = SessionKey::derive(None, &a, &server);
        assert!(!anonymous.verifies(Ticket(42), &proof));
        assert!(anonymous.verifies(Ticket(42), &anonymous.ticket_proof(Ticket(42))));
    }
}

/// A one-time, short-lived permission to open a bulk channel for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket(pub u64);

//! The null server (`cairn-perf null-server`): speaks Cairn's framing and answers every
//! request frame with an empty reply frame (its opcode with the reply bit, its request
//! id), doing no other work. Driving it with `--target null --max` measures the load
//! generator's own ceiling on this machine, so a result limited by the harness shows as
//! such. One thread, one mio poll, like a single Cairn shard without a state machine.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use anyhow::{Context, Result};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use cairn::protocol::{next_frame, FrameHeader, REPLY_BIT};

/// The listener's token.
const LISTENER: Token = Token(usize::MAX);
/// Bytes read per call.
const READ_CHUNK_BYTES: usize = 256 * 1024;

struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Appends the empty reply to each whole frame at the start of `input`; returns the
/// bytes consumed. A frame that cannot be framed ends the connection (`Err`).
pub fn answer(input: &[u8], output: &mut Vec<u8>) -> Result<usize> {
    let mut consumed = 0;
    while let Some(size) = next_frame(&input[consumed..]).map_err(|error| anyhow::anyhow!("{error}"))? {
        let header = FrameHeader::parse(input[consumed..consumed + 12].try_into().expect("a frame holds its header"));
        let reply = FrameHeader {
            length: 12,
            opcode: header.opcode | REPLY_BIT,
            flags: 0,
            reserved: 0,
            request_id: header.request_id,
        };
        output.extend_from_slice(&reply.encode());
        consumed += size;
    }
    Ok(consumed)
}

/// Serves until killed.
pub fn serve(listen: &str) -> Result<()> {
    let mut listener = TcpListener::bind(listen.parse().context("bad --listen address")?)?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("null server listening on {listen}");
    let mut clients: HashMap<usize, Client> = HashMap::new();
    let mut next_token = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        if let Err(error) = poll.poll(&mut events, None) {
            if error.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(error.into());
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    poll.registry().register(
                        &mut stream,
                        Token(next_token),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    clients.insert(next_token, Client { stream, input: Vec::new(), output: Vec::new() });
                    next_token += 1;
                }
                continue;
            }
            let token = event.token().0;
            let Some(client) = clients.get_mut(&token) else { continue };
            if !pump(client, &mut chunk) {
                let mut gone = clients.remove(&token).expect("present");
                let _ = poll.registry().deregister(&mut gone.stream);
            }
        }
    }
}

/// Reads what is there, answers it, writes what the socket takes; returns false when the
/// connection is finished.
fn pump(client: &mut Client, chunk: &mut [u8]) -> bool {
    loop {
        match client.stream.read(chunk) {
            Ok(0) => return false,
            Ok(read) => {
                client.input.extend_from_slice(&chunk[..read]);
                match answer(&client.input, &mut client.output) {
                    Ok(used) => drop(client.input.drain(..used)),
                    Err(_) => return false,
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !client.output.is_empty() {
        match client.stream.write(&client.output) {
            Ok(written) => drop(client.output.drain(..written)),
            // The writable event will call again.
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_whole_frame_gets_an_empty_reply() {
        let mut input = Vec::new();
        crate::cairn_target::encode(1, &crate::workload::Op::Rank { hunt: 0, player: 3 }, 41, &mut input);
        let whole = input.len();
        input.extend_from_slice(&input.clone()[..10]);
        let mut output = Vec::new();
        assert_eq!(answer(&input, &mut output).unwrap(), whole);
        assert_eq!(output, [12, 0, 0, 0, 0x9B, 0, 0, 0, 41, 0, 0, 0]);
        assert!(answer(&[4, 0, 0, 0], &mut output).is_err());
    }
}

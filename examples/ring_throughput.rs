//! Throughput of the inter-shard ring (`cairn::server::ring`) against the `rtrb` byte
//! ring it replaced, framed the same way (a 32-byte header and a payload per record).
//! Two modes: a producer thread and a consumer thread, each retrying while the ring is
//! full or empty; and both halves on one thread (fill, drain, repeat), which measures the
//! ring's own cost without scheduling. Both rings run back to back in one process,
//! several rounds, alternating, and the median of each is printed.
//!
//! `cargo run --release --example ring_throughput -- [RECORDS] [PAYLOAD_BYTES] [ROUNDS]`
//! (defaults: 2,000,000 records of 64 bytes, 5 rounds). On a shared machine, run it
//! under `nice` and read the medians, not one round.

use std::time::Instant;

use cairn::constants::{RING_RECORD_HEADER_SIZE, RING_SIZE_BYTES};
use cairn::server::ring::{ring, RecordHeader, RecordKind, PAYLOAD_SIZE_MAX};

/// The ring as it was before: framed records over `rtrb::RingBuffer<u8>`, header and
/// payload pushed as two slices, the header peeked before the record is taken.
mod rtrb_ring {
    use super::RING_RECORD_HEADER_SIZE;

    pub fn push(producer: &mut rtrb::Producer<u8>, header: &[u8; RING_RECORD_HEADER_SIZE], payload: &[u8]) -> bool {
        if producer.slots() < RING_RECORD_HEADER_SIZE + payload.len() {
            return false;
        }
        producer.push_entire_slice(header).expect("room was checked");
        producer.push_entire_slice(payload).expect("room was checked");
        true
    }

    pub fn pop(consumer: &mut rtrb::Consumer<u8>, payload: &mut Vec<u8>) -> bool {
        let available = consumer.slots();
        if available < RING_RECORD_HEADER_SIZE {
            return false;
        }
        let mut header = [0u8; RING_RECORD_HEADER_SIZE];
        {
            let chunk = consumer.read_chunk(RING_RECORD_HEADER_SIZE).expect("slots were checked");
            let (first, second) = chunk.as_slices();
            header[..first.len()].copy_from_slice(first);
            header[first.len()..].copy_from_slice(second);
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if available < RING_RECORD_HEADER_SIZE + size {
            return false;
        }
        consumer.pop_entire_slice(&mut header).expect("slots were checked");
        payload.clear();
        payload.resize(size, 0);
        consumer.pop_entire_slice(payload).expect("slots were checked");
        true
    }
}

/// Records per second through the in-house ring.
fn run_cairn(records: u32, payload_size: usize) -> f64 {
    let (mut producer, mut consumer) = ring(RING_SIZE_BYTES);
    let payload = vec![7u8; payload_size];
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        for request_id in 0..records {
            let header = RecordHeader { request_id, ..RecordHeader::new(RecordKind::Request) };
            while producer.try_push(&header, &payload).is_err() {
                std::hint::spin_loop();
            }
        }
    });
    let mut received = Vec::with_capacity(PAYLOAD_SIZE_MAX);
    for expected in 0..records {
        loop {
            if let Some(header) = consumer.pop(&mut received) {
                assert_eq!(header.request_id, expected);
                break;
            }
            std::hint::spin_loop();
        }
    }
    writer.join().unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records per second through the `rtrb` ring, same framing.
fn run_rtrb(records: u32, payload_size: usize) -> f64 {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u8>::new(RING_SIZE_BYTES);
    let payload = vec![7u8; payload_size];
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        for request_id in 0..records {
            let mut header = [0u8; RING_RECORD_HEADER_SIZE];
            header[0] = RecordKind::Request as u8;
            header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            header[16..20].copy_from_slice(&request_id.to_le_bytes());
            while !rtrb_ring::push(&mut producer, &header, &payload) {
                std::hint::spin_loop();
            }
        }
    });
    let mut received = Vec::with_capacity(PAYLOAD_SIZE_MAX);
    for _ in 0..records {
        while !rtrb_ring::pop(&mut consumer, &mut received) {
            std::hint::spin_loop();
        }
    }
    writer.join().unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// Records per second through the in-house ring with both halves on this thread: fill
/// the ring, drain it, repeat. No scheduling in the measurement, only the ring's own
/// cost per record, which on a busy machine is the steadier figure.
fn run_cairn_one_thread(records: u32, payload_size: usize) -> f64 {
    let (mut producer, mut consumer) = ring(RING_SIZE_BYTES);
    let payload = vec![7u8; payload_size];
    let mut received = Vec::with_capacity(PAYLOAD_SIZE_MAX);
    let (mut sent, mut taken) = (0, 0);
    let start = Instant::now();
    while taken < records {
        while sent < records {
            let header = RecordHeader { request_id: sent, ..RecordHeader::new(RecordKind::Request) };
            if producer.try_push(&header, &payload).is_err() {
                break;
            }
            sent += 1;
        }
        while let Some(header) = consumer.pop(&mut received) {
            assert_eq!(header.request_id, taken);
            taken += 1;
        }
    }
    records as f64 / start.elapsed().as_secs_f64()
}

/// [`run_cairn_one_thread`] for the `rtrb` ring.
fn run_rtrb_one_thread(records: u32, payload_size: usize) -> f64 {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u8>::new(RING_SIZE_BYTES);
    let payload = vec![7u8; payload_size];
    let mut received = Vec::with_capacity(PAYLOAD_SIZE_MAX);
    let (mut sent, mut taken) = (0u32, 0u32);
    let start = Instant::now();
    while taken < records {
        while sent < records {
            let mut header = [0u8; RING_RECORD_HEADER_SIZE];
            header[0] = RecordKind::Request as u8;
            header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            header[16..20].copy_from_slice(&sent.to_le_bytes());
            if !rtrb_ring::push(&mut producer, &header, &payload) {
                break;
            }
            sent += 1;
        }
        while rtrb_ring::pop(&mut consumer, &mut received) {
            taken += 1;
        }
    }
    records as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<u64>().expect("a number"));
    let records = args.next().unwrap_or(2_000_000) as u32;
    let payload_size = args.next().unwrap_or(64) as usize;
    let rounds = args.next().unwrap_or(5) as usize;
    type Run = fn(u32, usize) -> f64;
    let modes: [(&str, Run, Run); 2] =
        [("two threads", run_cairn, run_rtrb), ("one thread", run_cairn_one_thread, run_rtrb_one_thread)];
    for (mode, cairn_run, rtrb_run) in modes {
        let (mut cairn, mut rtrb) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so a drift in machine load hits both alike.
            if round % 2 == 0 {
                cairn.push(cairn_run(records, payload_size));
                rtrb.push(rtrb_run(records, payload_size));
            } else {
                rtrb.push(rtrb_run(records, payload_size));
                cairn.push(cairn_run(records, payload_size));
            }
            let (new, old) = (cairn[round] / 1e6, rtrb[round] / 1e6);
            println!("{mode}, round {round}: cairn {new:.2} M records/s, rtrb {old:.2} M records/s");
        }
        let (new, old) = (median(cairn) / 1e6, median(rtrb) / 1e6);
        println!("{mode}, median of {rounds}: cairn {new:.2} M records/s, rtrb {old:.2} M records/s");
    }
    println!("({records} records of {payload_size}-byte payload per round)");
}

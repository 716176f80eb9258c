//! 100,000 random mutations and truncations of the reference model's header: the reader returns
//! `Ok` or `Err`, never panics, never allocates without bound.

mod common;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rill_engine::gguf::{ChunkedReader, Gguf};

const CASES: usize = 100_000;

/// Values that tend to break length and count checks.
const INTERESTING: [u64; 8] = [0, 1, 0xff, 0xffff_ffff, 1 << 32, 1 << 62, i64::MAX as u64, u64::MAX];

fn run(seed: u64, cases: usize, header: &[u8], file_len: u64, tensor_infos: std::ops::Range<usize>) -> (usize, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buf = header.to_vec();
    let (mut ok, mut err) = (0, 0);
    for case in 0..cases {
        // Where to mutate: the preamble and first keys, the tensor infos, or anywhere.
        let region = match rng.random_range(0..4) {
            0 => 0..2048,
            1 => tensor_infos.clone(),
            _ => 0..buf.len(),
        };
        let mut saved = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let at = rng.random_range(region.clone());
            if rng.random_bool(0.5) {
                saved.push((at, buf[at]));
                buf[at] ^= 1 << rng.random_range(0..8);
            } else {
                let at = at.min(buf.len() - 8);
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())].to_le_bytes();
                for (i, b) in v.iter().enumerate() {
                    saved.push((at + i, buf[at + i]));
                    buf[at + i] = *b;
                }
            }
        }
        let cut = if rng.random_bool(0.3) {
            rng.random_range(0..=buf.len())
        } else {
            buf.len()
        };
        let input = &buf[..cut];
        let result = match case % 100 {
            // Now and then the chunked reader, in random pieces.
            0 => {
                let mut reader = ChunkedReader::new(if rng.random_bool(0.5) { Some(file_len) } else { None });
                let mut rest = input;
                let mut result = Ok(());
                while !rest.is_empty() && result.is_ok() {
                    let n = rng.random_range(1..=rest.len().min(1 << 20));
                    result = reader.push(&rest[..n]).map(|_| ());
                    rest = &rest[n..];
                }
                result.and_then(|_| reader.finish().map(|_| ()))
            }
            1..50 => Gguf::parse_header(input, Some(file_len)).map(|_| ()),
            _ => Gguf::parse_header(input, None).map(|_| ()),
        };
        match result {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
        }
        for (at, b) in saved.into_iter().rev() {
            buf[at] = b;
        }
    }
    assert_eq!(buf, header, "mutations were undone");
    (ok, err)
}

#[test]
fn random_mutations_and_truncations_never_panic() {
    let file = common::model_bytes();
    let g = Gguf::parse(&file).unwrap();
    let header = &file[..g.data_offset as usize];
    // The tensor infos are the last bytes before the data: 236 entries of under 100 bytes.
    let tensor_infos = header.len() - 236 * 100..header.len();
    let file_len = file.len() as u64;
    let threads = 2;
    let (ok, err) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let tensor_infos = tensor_infos.clone();
                s.spawn(move || run(t as u64, CASES / threads, header, file_len, tensor_infos))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!(ok + err, CASES);
    // Most mutations must be caught; some (a changed letter in a token) are still valid files.
    assert!(err > CASES / 2, "{err} errors in {CASES} cases");
    assert!(ok > 0, "some mutations leave a valid header");
    eprintln!("{CASES} cases: {ok} parsed, {err} rejected");
}

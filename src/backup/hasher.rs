//! Checksums beside the copy: file data is handed, buffer by buffer, to a thread that hashes it
//! while the caller reads and writes the next buffer, so on a machine with a second core the
//! sha256 of every file costs no time on the copy's path. Digests come back in file order.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Buffers in flight: one being filled, the others being hashed or waiting to be.
const BUFFERS: usize = 3;

enum Message {
    Data(Vec<u8>, usize),
    /// The file's data is all sent: its digest goes back.
    End,
}

/// A hashing thread and its buffers.
pub struct Hasher {
    to: Option<SyncSender<Message>>,
    free: Receiver<Vec<u8>>,
    digests: Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

impl Hasher {
    /// Starts the thread, with buffers of `size` bytes.
    pub fn start(size: usize) -> Hasher {
        let (to, from) = sync_channel::<Message>(BUFFERS);
        let (give_back, free) = sync_channel(BUFFERS);
        let (send_digest, digests) = std::sync::mpsc::channel();
        for _ in 0..BUFFERS {
            let _ = give_back.send(vec![0u8; size]);
        }
        let thread = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for message in from {
                match message {
                    Message::Data(buf, len) => {
                        hasher.update(&buf[..len]);
                        if give_back.send(buf).is_err() {
                            return;
                        }
                    }
                    Message::End => {
                        let digest = super::writer::hex(&std::mem::take(&mut hasher).finalize());
                        if send_digest.send(digest).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Hasher { to: Some(to), free, digests, thread: Some(thread) }
    }

    /// A buffer to fill (it holds old data), once one is free.
    pub fn buffer(&self) -> io::Result<Vec<u8>> {
        self.free.recv().map_err(|_| stopped())
    }

    /// Hashes the first `len` bytes of `buf` as the current file's next data.
    pub fn hash(&self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        self.send(Message::Data(buf, len))
    }

    /// Ends the current file; its digest is the next [`Hasher::digest`].
    pub fn end_file(&self) -> io::Result<()> {
        self.send(Message::End)
    }

    /// The hex sha256 of the oldest ended file not asked for yet.
    pub fn digest(&self) -> io::Result<String> {
        self.digests.recv().map_err(|_| stopped())
    }

    fn send(&self, message: Message) -> io::Result<()> {
        self.to.as_ref().ok_or_else(stopped)?.send(message).map_err(|_| stopped())
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.to = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_back_in_file_order() {
        let hasher = Hasher::start(4);
        for data in [&b"hello world"[..], b"", b"abc"] {
            for chunk in data.chunks(4) {
                let mut buf = hasher.buffer().unwrap();
                buf[..chunk.len()].copy_from_slice(chunk);
                hasher.hash(buf, chunk.len()).unwrap();
            }
            hasher.end_file().unwrap();
        }
        let expect = |data: &[u8]| super::super::writer::hex(&Sha256::digest(data));
        assert_eq!(hasher.digest().unwrap(), expect(b"hello world"));
        assert_eq!(hasher.digest().unwrap(), expect(b""));
        assert_eq!(hasher.digest().unwrap(), expect(b"abc"));
    }
}

//! Copy-on-write snapshots over sled, which has no point-in-time view. When a snapshot
//! begins, a capture is opened; from then on every apply batch, before it writes, records
//! the pre-image (the stored bytes, or their absence) of each data key it is about to
//! change for the first time. The snapshot writer reads the live tree and substitutes
//! those pre-images (`AsOfCapture`), so it produces the state exactly as it was when the
//! capture began while applies, and so client writes, go on.
//!
//! Why the substitution is exact, key by key: a value the scan reads is either the one
//! the key had at the start or a later one; a later one was written after its pre-image
//! was recorded, so the lookup that follows the read finds it. A key the scan never
//! returns was absent when the scan passed it; if it existed at the start, it was deleted
//! since, after its pre-image was recorded, so the lookup of the skipped range finds it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::keyspace::data_key;
use crate::error::StateMachineError;

/// Pre-images of the data keys changed since a capture began, by tree key; `None` = the
/// key did not exist at the start.
type PreImages = BTreeMap<Vec<u8>, Option<sled::IVec>>;

/// One open capture.
#[derive(Default)]
pub(crate) struct Capture {
    pre_images: Mutex<PreImages>,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, PreImages> {
        self.pre_images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of keys changed since the capture began.
    pub(crate) fn changed_keys(&self) -> usize {
        self.lock().len()
    }
}

/// The captures of one state machine: open ones, and a way to wait until none is.
#[derive(Default)]
pub(crate) struct Captures {
    open: Mutex<Vec<Arc<Capture>>>,
    closed: Condvar,
}

impl Captures {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Capture>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a capture; it records until the returned guard is dropped. The caller makes
    /// sure no apply batch is being written meanwhile (openraft's state machine worker
    /// asks for a snapshot builder between applies).
    pub(crate) fn begin(self: &Arc<Self>) -> CaptureGuard {
        let capture = Arc::new(Capture::default());
        self.lock().push(capture.clone());
        CaptureGuard {
            captures: self.clone(),
            capture,
        }
    }

    /// Records, for every open capture, the current value of each of `user_keys` it has
    /// not recorded yet. Called by an apply batch before it writes; costs one lock when
    /// no capture is open.
    pub(crate) fn record<'k>(
        &self,
        tree: &sled::Tree,
        user_keys: impl Iterator<Item = &'k Vec<u8>>,
    ) -> Result<(), StateMachineError> {
        let open = self.lock();
        if open.is_empty() {
            return Ok(());
        }
        for key in user_keys {
            let raw = data_key(key);
            let mut current: Option<Option<sled::IVec>> = None;
            for capture in open.iter() {
                let mut pre = capture.lock();
                if pre.contains_key(&raw) {
                    continue;
                }
                let value = match &current {
                    Some(v) => v.clone(),
                    None => {
                        let v = tree.get(&raw)?;
                        current = Some(v.clone());
                        v
                    }
                };
                pre.insert(raw.clone(), value);
            }
        }
        Ok(())
    }

    /// Blocks until every open capture is closed. A snapshot install calls this before it
    /// replaces the whole state, which no capture could describe.
    pub(crate) fn wait_closed(&self) {
        let mut open = self.lock();
        while !open.is_empty() {
            open = self.closed.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Keeps a capture open; dropping it closes the capture.
pub(crate) struct CaptureGuard {
    captures: Arc<Captures>,
    capture: Arc<Capture>,
}

impl CaptureGuard {
    pub(crate) fn capture(&self) -> &Capture {
        &self.capture
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let mut open = self.captures.lock();
        open.retain(|c| !Arc::ptr_eq(c, &self.capture));
        drop(open);
        self.captures.closed.notify_all();
    }
}

/// The data keys of the tree as they were when `capture` began, in key order: a live
/// scan with every changed key replaced by its pre-image. Yields (tree key, raw value).
pub(crate) struct AsOfCapture<'a> {
    scan: sled::Iter,
    capture: &'a Capture,
    /// The last tree key the scan returned.
    passed: Option<Vec<u8>>,
    ready: VecDeque<(Vec<u8>, sled::IVec)>,
    scan_done: bool,
}

impl<'a> AsOfCapture<'a> {
    pub(crate) fn new(scan: sled::Iter, capture: &'a Capture) -> Self {
        AsOfCapture {
            scan,
            capture,
            passed: None,
            ready: VecDeque::new(),
            scan_done: false,
        }
    }

    /// Queues the keys that existed at the start but that the scan skipped (deleted
    /// since) between the last key passed and `upto` (exclusive; None = to the end).
    fn queue_skipped(&mut self, pre: &PreImages, upto: Option<&[u8]>) {
        let lower = match &self.passed {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let upper = match upto {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        for (key, old) in pre.range::<[u8], _>((lower, upper)) {
            if let Some(old) = old {
                self.ready.push_back((key.clone(), old.clone()));
            }
        }
    }
}

impl Iterator for AsOfCapture<'_> {
    type Item = Result<(Vec<u8>, sled::IVec), StateMachineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.scan_done {
                return None;
            }
            match self.scan.next() {
                None => {
                    let capture = self.capture;
                    let pre = capture.lock();
                    self.queue_skipped(&pre, None);
                    self.scan_done = true;
                }
                Some(Err(e)) => {
                    self.scan_done = true;
                    return Some(Err(e.into()));
                }
                Some(Ok((key, live))) => {
                    let capture = self.capture;
                    let pre = capture.lock();
                    self.queue_skipped(&pre, Some(&key));
                    let at_start = match pre.get(key.as_ref()) {
                        Some(old) => old.clone(),
                        None => Some(live),
                    };
                    if let Some(value) = at_start {
                        self.ready.push_back((key.to_vec(), value));
                    }
                    self.passed = Some(key.to_vec());
                }
            }
        }
    }
}

//! A request body that can be taken back while nothing has read it: what lets the proxy
//! retry a request whose connection could not be made without buffering its body.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

/// The body of a forwarded request.
///
/// It starts in a slot shared with the proxy; the first poll moves it out. After a
/// failed send, [`Unsent::take`] gets it back only if that never happened, that is if
/// no byte of it can have gone to the upstream.
#[derive(Debug)]
pub(crate) struct ForwardBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    body: Option<Incoming>,
}

/// The proxy's handle on a [`ForwardBody`]'s slot.
#[derive(Debug)]
pub(crate) struct Unsent {
    slot: Arc<Mutex<Option<Incoming>>>,
}

/// Locks a slot; a panic while it was held (there is no code that could) leaves a
/// usable value.
fn lock(slot: &Mutex<Option<Incoming>>) -> MutexGuard<'_, Option<Incoming>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ForwardBody {
    /// A body to forward, and the handle that can take it back while it is unread.
    pub(crate) fn new(body: Incoming) -> (ForwardBody, Unsent) {
        let slot = Arc::new(Mutex::new(Some(body)));
        let unsent = Unsent {
            slot: Arc::clone(&slot),
        };
        (ForwardBody { slot, body: None }, unsent)
    }
}

impl Unsent {
    /// The body, if nothing has read from it.
    pub(crate) fn take(&self) -> Option<Incoming> {
        lock(&self.slot).take()
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            this.body = lock(&this.slot).take();
        }
        match &mut this.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            // Taken back by the proxy: this request is not going anywhere.
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => lock(&self.slot).as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(body) => body.size_hint(),
            None => lock(&self.slot)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

//! The one response body type: fixed bytes for JSON answers, or a live event stream fed by a
//! task over a small bounded channel (SSE).
//!
//! One concrete enum rather than a boxed trait object keeps every route's return type the
//! same without an allocation per response, and lets an event stream report its end exactly
//! when the feeding task lets go of its sender.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// See the module docs.
#[derive(Debug)]
pub(crate) enum Body {
    /// Nothing (101 Switching Protocols).
    Empty,
    /// A complete body, sent with `Content-Length`; `None` once it was handed to hyper.
    Full(Option<Bytes>),
    /// Chunks as the feeding task produces them; ends when it drops the sender. Bounded so a
    /// slow reader holds back only its own task.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(chunks) => chunks.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

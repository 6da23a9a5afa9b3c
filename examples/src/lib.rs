//! Runnable tickfeed clients; see each file under examples/.

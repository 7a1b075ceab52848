//! What each process says it runs: every collective between processes starts with an
//! all-gather of a few words from every process (the collective and its shape), of the
//! same size whatever the collective, so processes out of step (another collective, shape,
//! dimension or root in the same place of the sequence) get an [`Error::Processes`] naming
//! both, before any exchange whose size depends on them (MPI aborts the job on a size
//! mismatch, and pairs equal sizes silently).

use super::processes::Processes;
use super::Comm;
use crate::error::{Error, Result};

/// Words in a header: the collective, then three of its arguments.
pub(super) const WORDS: usize = 4;
pub(super) const ALL_REDUCE: u64 = 1;
/// `+ dim`.
pub(super) const REDUCE_SCATTER: u64 = 2;
/// `+ dim`.
pub(super) const ALL_GATHER: u64 = 4;
pub(super) const BROADCAST: u64 = 6;
pub(super) const FROM_LOCALS: u64 = 7;
pub(super) const TO_HOST: u64 = 8;

/// The collective a header names, for messages.
pub(super) fn describe(w: &[u64]) -> String {
    let dim = |base: u64| w[0] - base;
    match w[0] {
        ALL_REDUCE => format!("all_reduce of [{}, {}]", w[1], w[2]),
        t if (REDUCE_SCATTER..REDUCE_SCATTER + 2).contains(&t) => format!(
            "reduce_scatter(dim {}) of [{}, {}]",
            dim(REDUCE_SCATTER),
            w[1],
            w[2]
        ),
        t if (ALL_GATHER..ALL_GATHER + 2).contains(&t) => format!(
            "all_gather(dim {}) of shards {} wide across",
            dim(ALL_GATHER),
            w[1]
        ),
        BROADCAST => format!("broadcast(root {})", w[1]),
        FROM_LOCALS => "from_locals of shards".to_string(),
        TO_HOST => "to_host".to_string(),
        t => format!("collective {t}"),
    }
}

/// The error for process `p` running `theirs` where this one runs `ours`.
pub(super) fn out_of_step(op: &'static str, p: usize, theirs: &[u64], ours: &[u64]) -> Error {
    Error::Processes {
        op,
        message: format!(
            "process {p} runs {} where this process runs {}: the processes are out of step",
            describe(theirs),
            describe(ours)
        ),
    }
}

impl Comm {
    /// Checks that every process runs `what` with `args` here (see the module docs).
    pub(super) fn agree(
        &self,
        op: &'static str,
        procs: &Processes,
        what: u64,
        args: [u64; 3],
    ) -> Result<()> {
        let ours = [what, args[0], args[1], args[2]];
        let lens = vec![WORDS; procs.count()];
        let (_, all) =
            procs.all_gather(op, ours.to_vec(), (Vec::new(), &lens), self.span_timeout())?;
        match all.chunks(WORDS).position(|theirs| theirs != ours) {
            Some(p) => Err(out_of_step(op, p, &all[p * WORDS..(p + 1) * WORDS], &ours)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_step_messages_name_both_collectives() {
        let e = out_of_step(
            "all_gather",
            1,
            &[BROADCAST, 0, 0, 0],
            &[ALL_GATHER, 6, 0, 0],
        );
        let m = e.to_string();
        assert!(m.contains("process 1 runs broadcast(root 0)"), "{m}");
        assert!(m.contains("this process runs all_gather(dim 0)"), "{m}");
        let m = describe(&[REDUCE_SCATTER + 1, 4, 6, 9]);
        assert_eq!(m, "reduce_scatter(dim 1) of [4, 6]");
    }
}

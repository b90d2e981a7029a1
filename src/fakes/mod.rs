//! Fakes of the bridge neighbours (filled below).

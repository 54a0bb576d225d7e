package runnerapitest

// LongPollWaiters returns how many job requests long polling holds now, so a test can act once one is held.
func LongPollWaiters(s *Server) int64 { return s.v4.longPollWaiters.Load() }

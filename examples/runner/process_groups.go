//go:build unix

package main

import (
	"sync"
	"syscall"
)

// processGroups are the process groups of the scripts running now. An exit forced by a second signal kills them
// all: it does not wait for the builds, each of which would kill its own, and a script started afterwards is
// killed at once.
type processGroups struct {
	mu     sync.Mutex
	ids    map[int]bool
	killed bool
}

// add records the group of the script whose process is pid, or kills it when the groups were killed already.
func (g *processGroups) add(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.killed {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return
	}
	if g.ids == nil {
		g.ids = make(map[int]bool)
	}
	g.ids[pid] = true
}

// remove forgets the group of pid, once its script has ended and its group was killed.
func (g *processGroups) remove(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.ids, pid)
}

// killAll kills every group recorded, and any added later.
func (g *processGroups) killAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.killed = true
	for pid := range g.ids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

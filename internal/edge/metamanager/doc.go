// Package metamanager persists every object the cloud sends before
// acknowledging it. Messages are taken in batches and written in one SQLite
// transaction (group commit), so one fsync covers many objects; each message
// in the batch is acknowledged only after that transaction committed.
package metamanager

// Package memtrim gives back to the kernel the pages of the running
// executable that only start-up needed.
//
// A Go binary's package initialisers are spread over its whole text and
// read-only data, and the kernel maps 64 KiB (or a whole large folio) around
// every page fault, so by the end of start-up most of a 40 MB executable is
// mapped and counted in RSS although the steady state uses a fraction of it.
// MADV_PAGEOUT on the read-only mappings drops the pages this process alone
// maps (the kernel skips pages shared with other processes); what the
// process still uses faults back in from the file.
package memtrim

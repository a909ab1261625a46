package keadm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kubeedge-go/kubeedge/internal/config"
	edgeconfig "github.com/kubeedge-go/kubeedge/internal/edge/config"
)

type resetOptions struct {
	DataDir    string
	ConfigPath string
	Force      bool
}

func newResetCommand(d Deps) *cobra.Command {
	o := resetOptions{ConfigPath: DefaultConfigPath}
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Undo keadm join: stop edgecore and remove its configuration, certificates and database",
		Long: "reset stops the edgecore that keadm join started and removes the files join wrote: the\n" +
			"configuration, the certificates and the database it names, and edgecore's log and pid file.\n" +
			"Pass the same --data-dir and --config as to join.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return reset(cmd.Context(), d, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, flagDataDir, o.DataDir, "the --data-dir given to join")
	f.StringVarP(&o.ConfigPath, flagConfig, "c", o.ConfigPath, "the edgecore configuration join wrote")
	f.BoolVarP(&o.Force, flagForce, "f", o.Force, "do not ask for confirmation (required when stdin is not a terminal)")
	return cmd
}

func reset(ctx context.Context, d Deps, o resetOptions) error {
	paths, err := newLayout(o.DataDir, o.ConfigPath)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { fmt.Fprintf(d.Stdout, format+"\n", args...) }
	files, note := resetFiles(paths)
	if note != "" {
		fmt.Fprintln(d.Stderr, "note: "+note)
	}
	if !o.Force {
		if !isTerminal(d.Stdin) {
			return fmt.Errorf("reset stops edgecore and deletes its configuration, certificates and database; stdin is not a terminal, so pass --%s to confirm", flagForce)
		}
		fmt.Fprintf(d.Stdout, "This stops edgecore and deletes:\n  %s\nContinue? [y/N] ", strings.Join(files, "\n  "))
		answer, _ := bufio.NewReader(d.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("reset cancelled")
		}
	}

	if err := stopEdgecore(ctx, d.Clock, paths.PIDFile, paths.Config, say); err != nil {
		return err
	}
	var errs []error
	dirs := map[string]bool{}
	for _, f := range files {
		err := os.Remove(f)
		switch {
		case err == nil:
			say("removed %s", f)
			dirs[filepath.Dir(f)] = true
		case errors.Is(err, fs.ErrNotExist):
		default:
			errs = append(errs, err)
		}
	}
	// Directories join created are removed once empty; anything else a user
	// put there stays, and so does the directory.
	for dir := range dirs {
		_ = os.Remove(dir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset incomplete: %w", err)
	}
	say("reset complete")
	return nil
}

// resetFiles lists the files join wrote. Certificate and database paths are
// read from the configuration, since a user may have edited them; if it
// cannot be read the layout's defaults are used and note says why.
func resetFiles(paths layout) (files []string, note string) {
	ca, cert, key, db, storeKey := paths.CAFile, paths.CertFile, paths.KeyFile, paths.Database, paths.StoreKey
	c := edgeconfig.Default("")
	switch err := config.Load(paths.Config, c); {
	case err == nil:
		h := c.Modules.EdgeHub
		ca, cert, key, db, storeKey = h.TLSCAFile, h.TLSCertFile, h.TLSPrivateKeyFile, c.Database.DataSource, c.Database.EncryptionKeyFile
	case errors.Is(err, fs.ErrNotExist):
	default:
		note = fmt.Sprintf("cannot read %v; removing the default files for this --data-dir instead", err)
	}
	// The database key goes with the database: without it the sealed
	// secrets in a leftover database could not be read anyway.
	files = []string{paths.Config, ca, cert, key, storeKey}
	if db != "" {
		// SQLite's write-ahead log and shared-memory index go with the database.
		files = append(files, db, db+"-wal", db+"-shm", db+"-journal")
	}
	files = append(files, paths.LogFile, paths.PIDFile)
	out := files[:0]
	for _, f := range files {
		if f != "" && filepath.IsAbs(f) {
			out = append(out, f)
		}
	}
	return out, note
}

// isTerminal reports whether r is a terminal, where someone can answer a
// question (/dev/null is a character device but not a terminal).
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

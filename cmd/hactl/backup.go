package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hactl/hactl/data"
)

// targetFlags are the flags every backup command uses to open a target.
type targetFlags struct {
	url, hostKey, identity string
}

func (tf *targetFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&tf.url, "target", "", "backup target: dir:///path or sftp://user@host:port/path")
	f.StringVar(&tf.hostKey, "host-key", "", "pinned SFTP host key (an authorized_keys line); required for sftp targets")
	f.StringVar(&tf.identity, "identity", "", "private key for SFTP login (default $HACTL_BACKUP_KEY, else ~/.ssh/id_ed25519)")
	cmd.MarkFlagRequired("target")
}

func (tf *targetFlags) open(ctx context.Context, g *globals) (data.Target, error) {
	return data.OpenTarget(ctx, tf.url, data.TargetOptions{HostKey: tf.hostKey, KeyFile: tf.identity, Logger: g.logger})
}

func backupJSON(g *globals, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Make, list and verify backups of a data directory",
		Long: `A backup is a checksummed JSON manifest plus content-addressed objects at a
target (dir:///path or sftp://user@host:port/path): unchanged files are never
uploaded twice. See docs/data.md.`,
	}
	cmd.AddCommand(newBackupListCmd(g), newBackupRunCmd(g), newBackupVerifyCmd(g))
	return cmd
}

func newBackupListCmd(g *globals) *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the backups at a target, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := tf.open(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			list, err := data.ListBackups(ctx, t)
			if err != nil {
				return err
			}
			if g.jsonOut {
				if list == nil {
					list = []data.BackupInfo{}
				}
				return backupJSON(g, list)
			}
			if len(list) == 0 {
				fmt.Fprintf(g.stdout, "no backups at %s\n", t)
			}
			for _, b := range list {
				age := time.Since(b.Time).Round(time.Second)
				if b.Err != "" {
					fmt.Fprintf(g.stdout, "%s  %-10s  UNREADABLE: %s\n", b.ID, age, b.Err)
					continue
				}
				fmt.Fprintf(g.stdout, "%s  %-10s  %d files  %d bytes\n", b.ID, age, b.Files, b.Bytes)
			}
			return nil
		},
	}
	tf.add(cmd)
	return cmd
}

func newBackupRunCmd(g *globals) *cobra.Command {
	var (
		tf                  targetFlags
		dir                 string
		keepLast, keepDaily int
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Back up a directory to a target now, then apply retention",
		Long: `Run snapshots -dir, uploads the content the target lacks and writes the
backup's manifest. With -keep-last or -keep-daily it then deletes older backups
(keeping the newest N, plus the newest of each of the last D days) and prunes
objects no remaining backup refers to.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := tf.open(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			info, err := data.Backup(ctx, dir, t)
			if err != nil {
				return err
			}
			var ret *data.RetentionReport
			if keepLast > 0 || keepDaily > 0 {
				r, err := data.ApplyRetention(ctx, t, keepLast, keepDaily, time.Now(), g.logger)
				if err != nil {
					return fmt.Errorf("backup %s stored, retention failed: %w", info.ID, err)
				}
				ret = &r
			}
			if g.jsonOut {
				return backupJSON(g, map[string]any{"backup": info, "retention": ret})
			}
			fmt.Fprintf(g.stdout, "backup %s at %s: %d files, %d bytes; uploaded %d objects (%d bytes)\n",
				info.ID, t, info.Files, info.Bytes, info.Uploaded, info.UploadedBytes)
			if ret != nil {
				fmt.Fprintf(g.stdout, "retention: kept %d, deleted %d backups, pruned %d objects\n", len(ret.Kept), len(ret.Deleted), ret.PrunedObjects)
			}
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().StringVar(&dir, "dir", "", "directory to back up")
	cmd.Flags().IntVar(&keepLast, "keep-last", 0, "keep the newest N backups (with -keep-daily; both 0 keeps all)")
	cmd.Flags().IntVar(&keepDaily, "keep-daily", 0, "keep the newest backup of each of the last D days")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newBackupVerifyCmd(g *globals) *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "verify [ID]",
		Short: "Re-hash a backup's objects (every backup without ID); exit 1 if any is damaged",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := tf.open(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			ids := args
			if len(ids) == 0 {
				list, err := data.ListBackups(ctx, t)
				if err != nil {
					return err
				}
				for _, b := range list {
					ids = append(ids, b.ID)
				}
			}
			reports := []data.VerifyReport{}
			bad := 0
			for _, id := range ids {
				r, err := data.Verify(ctx, t, id)
				if err != nil {
					return err
				}
				if !r.OK {
					bad++
				}
				reports = append(reports, r)
			}
			if g.jsonOut {
				if err := backupJSON(g, reports); err != nil {
					return err
				}
			} else {
				for _, r := range reports {
					switch {
					case r.OK:
						fmt.Fprintf(g.stdout, "%s  ok       %d objects, %d bytes\n", r.ID, r.Objects, r.Bytes)
					case r.Manifest != "":
						fmt.Fprintf(g.stdout, "%s  DAMAGED  manifest: %s\n", r.ID, r.Manifest)
					default:
						fmt.Fprintf(g.stdout, "%s  DAMAGED  %d corrupt, %d missing of %d objects\n", r.ID, len(r.Corrupt), len(r.Missing), r.Objects)
					}
				}
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d backups at %s are damaged", bad, len(reports), t)}
			}
			return nil
		},
	}
	tf.add(cmd)
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		tf      targetFlags
		id, dir string
	)
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup into a directory (the newest that verifies by default)",
		Long: `Restore writes the backup into a temporary directory beside -dir, checks
every file against its hash, then swaps it in atomically. Without -backup it
restores the newest backup that is intact, skipping damaged ones, and reports
the age of what it restored (the data loss actually suffered).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := tf.open(ctx, g)
			if err != nil {
				return err
			}
			defer t.Close()
			rep, err := data.Restore(ctx, t, data.RestoreOptions{ID: id, Dir: dir, Logger: g.logger})
			if err != nil {
				return err
			}
			if g.jsonOut {
				return backupJSON(g, rep)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintf(g.stdout, "skipped %s: %s\n", s.ID, s.Reason)
			}
			fmt.Fprintf(g.stdout, "restored backup %s (%s old) into %s: %d files, %d bytes\n",
				rep.ID, rep.Age.Round(time.Second), dir, rep.Files, rep.Bytes)
			return nil
		},
	}
	tf.add(cmd)
	cmd.Flags().StringVar(&id, "backup", "", "backup ID to restore (default: the newest intact one)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to restore into (replaced atomically)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

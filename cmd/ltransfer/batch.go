package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert/batch"
	"github.com/ltransfer/ltransfer/graph"
)

func batchCommand() *cli.Command {
	return &cli.Command{
		Name:      "batch",
		Usage:     "run the transfer and eval jobs of a manifest: resumable, in parallel, sharded across processes",
		ArgsUsage: "MANIFEST.(json|yaml)",
		Description: "A manifest has `defaults` (any job field) and `jobs`; the fields are documented in the\n" +
			"README and in the convert package. Jobs whose outputs are complete are skipped, so a rerun\n" +
			"resumes an interrupted batch. With --shard-count N, or under a Kubernetes Indexed Job\n" +
			"(JOB_COMPLETION_INDEX) or a Slurm job array (SLURM_ARRAY_TASK_ID), each process runs the\n" +
			"jobs of its shard, chosen by a hash of every job's output and inputs. Processes running at\n" +
			"once on one folder lock each job's output: a job another process holds is waited for.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "parallel", Aliases: []string{"j"}, Value: 1, Usage: "jobs run at once"},
			&cli.IntFlag{Name: "shard-index", EnvVars: []string{"LTRANSFER_SHARD_INDEX"}, Usage: "the shard this process runs, from 0",
				DefaultText: "JOB_COMPLETION_INDEX, or SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN"},
			&cli.IntFlag{Name: "shard-count", EnvVars: []string{"LTRANSFER_SHARD_COUNT"}, Usage: "the number of shards (a Kubernetes Indexed Job's completions)",
				DefaultText: "SLURM_ARRAY_TASK_COUNT, or 1"},
			&cli.BoolFlag{Name: "force", Usage: "rerun the jobs whose outputs are complete"},
			&cli.BoolFlag{Name: "allow-outside", Usage: "accept outputs outside the manifest's folder (refused by default)"},
			&cli.StringFlag{Name: "report", Usage: "the file the batch report is written to",
				DefaultText: "batch-report.json next to the manifest, batch-report.shard-I-of-N.json for shard I of N"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list the jobs of this shard and exit"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "also print every transfer step"},
			&cli.BoolFlag{Name: "json", Usage: "print the batch report as JSON on stdout instead of the summary table"},
		},
		Before: positional(1, 1, "one manifest file (.json, .yaml or .yml)"),
		Action: runBatch,
	}
}

// runBatch is the batch command: it parses the manifest, picks the shard, runs it with the
// command's context (which SIGINT and SIGTERM end, see main), and prints the summary.
func runBatch(c *cli.Context) error {
	if c.Int("parallel") < 1 {
		return usagef("--parallel %d: want at least 1", c.Int("parallel"))
	}
	path := c.Args().First()
	m, err := batch.ManifestOptions{AllowOutside: c.Bool("allow-outside")}.Load(path)
	if err != nil {
		var me *batch.ManifestError
		if errors.As(err, &me) {
			return usageError{err}
		}
		return err
	}
	shard, err := batchShard(c)
	if err != nil {
		return err
	}
	var mine []*batch.Job
	for _, j := range m.Jobs {
		if shard.Owns(j) {
			mine = append(mine, j)
		}
	}
	if c.Bool("dry-run") {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ID\tKIND\tOUTPUT\n")
		for _, j := range mine {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", j.ID, j.Kind, j.Out)
		}
		fmt.Fprintf(c.App.ErrWriter, "shard %d of %d: %d of the manifest's %d jobs\n", shard.Index, shard.Count, len(mine), len(m.Jobs))
		return tw.Flush()
	}
	report := c.String("report")
	if report == "" {
		name := "batch-report.json"
		if shard.Count > 1 {
			name = fmt.Sprintf("batch-report.shard-%d-of-%d.json", shard.Index, shard.Count)
		}
		report = filepath.Join(filepath.Dir(path), name)
	}

	// For tests only: a pause between writing each file and renaming it (see graph.WriteDelay).
	if v := os.Getenv("LTRANSFER_TEST_WRITE_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("LTRANSFER_TEST_WRITE_DELAY=%q: %w", v, err)
		}
		graph.WriteDelay = d
	}

	quiet, verbose := c.Bool("quiet"), c.Bool("verbose")
	w := c.App.ErrWriter
	if !quiet {
		fmt.Fprintf(w, "batch %s: shard %d of %d: %d of %d jobs, %d at once\n", path, shard.Index, shard.Count, len(mine), len(m.Jobs), c.Int("parallel"))
	}
	finished := 0
	lowerGC()
	rep, runErr := batch.Run(c.Context, m, batch.Options{
		Parallel: c.Int("parallel"), Shard: shard, Force: c.Bool("force"), Report: report,
		Progress: func(e batch.Event) {
			switch {
			case e.Result != nil:
				finished++
				if quiet {
					return
				}
				r := e.Result
				switch r.Status {
				case batch.StatusFailed:
					fmt.Fprintf(w, "[%d/%d] %s: failed after %.1fs: %s\n", finished, len(mine), r.ID, r.Seconds, r.Error)
				case batch.StatusSkipped:
					fmt.Fprintf(w, "[%d/%d] %s: skipped, its outputs are complete: %s\n", finished, len(mine), r.ID, r.Output)
				default:
					fmt.Fprintf(w, "[%d/%d] %s: %s in %.1fs: %s\n", finished, len(mine), r.ID, r.Status, r.Seconds, r.Output)
				}
			case e.Holder != "":
				if !quiet {
					fmt.Fprintf(w, "%s: waiting for %s, which writes %s\n", e.Job.ID, e.Holder, e.Job.Out)
				}
			case e.Step != nil:
				if verbose && !quiet {
					s := e.Step
					fmt.Fprintf(w, "%s: step %d/%d  acc %6.2f%%  loss %.4f\n", e.Job.ID, s.Step, s.Total-1, 100*s.Accuracy, s.Loss)
				}
			case !quiet:
				fmt.Fprintf(w, "%s: started (%s)\n", e.Job.ID, e.Job.Kind)
			}
		},
	})
	if rep == nil {
		return runErr
	}
	if rep.Path != report && !quiet {
		fmt.Fprintf(w, "another process writes %s: this run's report is %s\n", report, rep.Path)
	}
	report = rep.Path
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else if err := printBatchSummary(c, rep); err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(w, "%d ok, %d skipped, %d failed, %d cancelled; report %s\n", rep.Count(batch.StatusOK),
			rep.Count(batch.StatusSkipped), rep.Count(batch.StatusFailed), rep.Count(batch.StatusCancelled), report)
	}
	if errors.Is(runErr, batch.ErrInterrupted) {
		return fmt.Errorf("batch interrupted (%v): %d jobs cancelled, every file left is complete; rerun the same command to resume", context.Cause(c.Context), rep.Count(batch.StatusCancelled))
	}
	if runErr != nil {
		return runErr
	}
	if n := rep.Count(batch.StatusFailed); n > 0 {
		return fmt.Errorf("batch: %d of %d jobs failed (see %s)", n, len(rep.Jobs), report)
	}
	return nil
}

// batchShard returns the shard this process runs: from the flags (or LTRANSFER_SHARD_INDEX and
// LTRANSFER_SHARD_COUNT), else from a scheduler's environment, else the whole manifest.
func batchShard(c *cli.Context) (batch.Shard, error) {
	count := c.Int("shard-count")
	if c.IsSet("shard-index") {
		if !c.IsSet("shard-count") {
			return batch.Shard{}, usagef("--shard-index needs --shard-count")
		}
		s := batch.Shard{Index: c.Int("shard-index"), Count: count}
		if err := s.Check(); err != nil {
			return s, usageError{err}
		}
		return s, nil
	}
	s, ok, err := batch.ShardFromEnv(os.LookupEnv, count)
	if err != nil {
		return s, usageError{err}
	}
	if ok {
		return s, nil
	}
	if c.IsSet("shard-count") && count != 1 {
		return s, usagef("--shard-count %d needs --shard-index, or JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID in the environment", count)
	}
	return batch.Shard{Index: 0, Count: 1}, nil
}

// printBatchSummary prints a table of the jobs: the output of the jobs that went well, the
// error of those that failed.
func printBatchSummary(c *cli.Context, rep *batch.Report) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tKIND\tSTATUS\tSECONDS\tOUTPUT / ERROR\n")
	for _, j := range rep.Jobs {
		detail := j.Output
		if j.Error != "" {
			detail = j.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\n", j.ID, j.Kind, j.Status, j.Seconds, detail)
	}
	return tw.Flush()
}

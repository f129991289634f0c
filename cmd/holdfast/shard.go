package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast/internal/opendb"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/shard"
)

// shardCmd works on the shard map of a deployment over several
// PostgreSQL primaries, directly on the databases (as audit does).
func shardCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "shard",
		Short: "Show the shard map, move a partition (an event) to another shard",
		Long: `shard works on the databases of a sharded deployment (--db, the catalog, and
every --shard, in the order the servers are given them) while the servers run.`,
	}
	c.AddCommand(shardListCmd(e), shardMoveCmd(e))
	return c
}

// openShardMap opens the shards as they are: no migration, no resolver
// (the servers run theirs).
func openShardMap(ctx context.Context, db *dbFlags) (*shard.Set, error) {
	if len(db.shards) == 0 {
		return nil, fmt.Errorf("shard: give the catalog (--db) and every --shard, in the servers' order")
	}
	return opendb.OpenShards(ctx, db.db, db.shards, postgres.Options{NoMigrate: true, NoCoalesce: true, MaxConns: 4, ResolveEvery: -1})
}

func shardListCmd(e env) *cobra.Command {
	var db dbFlags
	var asJSON bool
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the partitions, the shard each lives on, and what is in it",
		Example: "  holdfast shard list --db postgres://catalog/holdfast --shard postgres://east/holdfast --shard postgres://west/holdfast",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := openShardMap(cmd.Context(), &db)
			if err != nil {
				return err
			}
			defer s.Close()
			ps, err := s.Partitions(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(ps)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PARTITION\tSHARD\tMOVES\tPOOLS\tGROUPS\tUNITS")
			for _, p := range ps {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\n", p.Partition, p.Shard, p.Version, p.Pools, p.Groups, p.Units)
			}
			return w.Flush()
		},
	}
	db.register(c.Flags(), e)
	c.Flags().BoolVar(&asJSON, "json", false, "print the map as JSON")
	return c
}

func shardMoveCmd(e env) *cobra.Command {
	var db dbFlags
	to := -1
	c := &cobra.Command{
		Use:   "move PARTITION --to SHARD",
		Short: "Move a partition (an event) and everything in it to another shard, online",
		Long: `move copies a partition's pools, groups, units, holds and waitlists to shard
SHARD (0 is the catalog, 1 the first --shard…) while the servers sell it:
writes to the partition wait for a short moment (the fence: its rows are
locked, copied, deleted from the old shard and the map flipped in one
two-phase commit), then go to the new shard; nothing is lost or sold twice.
A partition with a waiting room, or with an open hold that also has lines in
another partition on the same shard, is not moved (exit 1, say why).`,
		Example: "  holdfast shard move festival-day2 --to 2 --db postgres://catalog/holdfast --shard postgres://east/holdfast --shard postgres://west/holdfast",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return fmt.Errorf("shard move: --to SHARD is required")
			}
			s, err := openShardMap(cmd.Context(), &db)
			if err != nil {
				return err
			}
			defer s.Close()
			rep, err := s.MovePartition(cmd.Context(), args[0], to)
			if err != nil {
				return err
			}
			if rep.From == rep.To {
				fmt.Fprintf(e.stdout, "partition %s is on shard %d already\n", rep.Partition, rep.To)
				return nil
			}
			fmt.Fprintf(e.stdout, "moved partition %s from shard %d to shard %d: %d pools, %d groups, %d units, %d holds, %d idempotency keys; writes waited %s (%d fences tried)\n",
				rep.Partition, rep.From, rep.To, rep.Pools, rep.Groups, rep.Units, rep.Holds, rep.Keys, rep.Fenced.Round(100_000), rep.Attempts)
			return nil
		},
	}
	db.register(c.Flags(), e)
	c.Flags().IntVar(&to, "to", -1, "the shard to move it to: 0 is --db, 1 the first --shard, …")
	return c
}

package testenv

import (
	"fmt"
	"strings"
	"time"
)

// Configure sets a configuration parameter on every live node of the
// cluster (CONFIG SET), e.g. cluster-require-full-coverage, for a test
// that compares settings.
func (c *Cluster) Configure(param, value string) error {
	for _, n := range c.liveNodes() {
		out, err := Cli(n, "config", "set", param, value)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "OK" {
			return fmt.Errorf("%s: config set %s %s: %q", n.Addr, param, value, out)
		}
	}
	return nil
}

// WaitSynced waits until every replica has its master's data and follows
// its stream (master_link_status:up, no sync in progress). A cluster just
// created has replicas that are replicas in name only: a master waits
// repl-diskless-sync-delay (5 s by default) before the first full sync,
// and a master killed before it has no copy anywhere. WaitSynced sets
// that delay to 0 first, so that the wait is short; a failover test must
// call it before the kill, or it measures a replica that never had the
// data rather than what asynchronous replication loses.
func (c *Cluster) WaitSynced(within time.Duration) error {
	if err := c.Configure("repl-diskless-sync-delay", "0"); err != nil {
		return err
	}
	return waitFor(within, func() error {
		replicas := 0
		for _, n := range c.liveNodes() {
			out, err := Cli(n, "info", "replication")
			if err != nil {
				return err
			}
			if infoField(out, "role") != "slave" {
				continue
			}
			replicas++
			if st := infoField(out, "master_link_status"); st != "up" {
				return fmt.Errorf("%s: master_link_status:%s", n.Addr, st)
			}
			if infoField(out, "master_sync_in_progress") != "0" {
				return fmt.Errorf("%s: sync in progress", n.Addr)
			}
		}
		if replicas == 0 {
			return fmt.Errorf("no replica")
		}
		return nil
	})
}

# PgarkMatrix — the version matrix: one scenario, run by tests/t/06x_major_NN.pl once
# per PostgreSQL major (so that prove -j runs majors side by side), each server from
# PgarkMajors. It covers what pgark does with a server, in the order a DBA meets it:
#
#  - receive: the slot is created, the receiver is stopped and started again, killed
#    with SIGKILL mid-load and started again; every segment it archived equals the
#    primary's own copy, with no gap;
#  - backup from the primary, with a tablespace (each major's BASE_BACKUP syntax and
#    result shape); wal-push of a completed segment;
#  - a hot standby seeded by pgark restore (standby.signal, primary_conninfo), and a
#    backup taken from it (its last WAL segment is not complete there: the backup keeps
#    it, the receiver archives it);
#  - restore --start --wait to a time, an xid (from the standby's backup), a restore
#    point and "immediate", each giving exactly the rows committed up to the target, and
#    to an LSN with action shutdown (the state read from that major's control file),
#    started by that major's pg_ctl through pg_bindir (15: found in
#    /usr/lib/postgresql/15/bin); restore --start refuses another major's pg_ctl before
#    it writes anything;
#  - the primary stops, the standby is promoted: the receiver follows it onto timeline
#    2; a restore to latest gives every row of both timelines, its server log shows
#    segments served from wal-fetch's read-ahead cache;
#  - info, check, verify (WAL decoded on that major's record formats: every segment
#    has an exact time index, the commit times of the index are the server's own),
#    expire, and verify catching a damaged chunk and a missing segment;
#  - drill to latest: that major's server restored beside its scratch directory (the
#    tablespace too), amcheck on every index, the point reached checked in its WAL.

package PgarkMatrix;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::Local ();
use PgarkMajors;
use PgarkTest;

our @EXPORT = qw(major_scenario);

my $SEG = 16 * 1024 * 1024;

sub major_scenario
{
	my ($major) = @_;
	plan skip_all => "PostgreSQL $major is not in PGARK_TEST_MAJORS (\"" . ($ENV{PGARK_TEST_MAJORS} // '') . '")'
	  unless major_selected($major);

	my $install = pg_install_path($major);
	my $bindir = "$install/bin";
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $repo = "$tmp/repo";
	my $sdir = "$tmp/spool/main";

	my $primary = PostgreSQL::Test::Cluster->new("primary$major", install_path => $install);
	$primary->init(allows_streaming => 1);
	$primary->append_conf('postgresql.conf', <<"EOF");
track_commit_timestamp = on
wal_keep_size = 1GB
autovacuum = off
EOF
	$primary->start;
	my $version = $primary->safe_psql('postgres', 'SHOW server_version_num');
	is(int($version / 10000), $major, "the primary runs PostgreSQL $major ($version)");
	my $h = $primary->host;

	# The standby's port is known before it exists: the receiver's conninfo names both,
	# and follows whichever is the primary.
	my $standby = PostgreSQL::Test::Cluster->new("standby$major", install_path => $install);
	my $conninfo = "host=$h,$h port=" . $primary->port . ',' . $standby->port
	  . ' target_session_attrs=read-write dbname=postgres';
	my $cluster_yaml = sub {
		my ($conn, $bin) = @_;
		$bin //= $major == 15 ? undef : $bindir;
		return receiver_config(
			spool => "$tmp/spool",
			repos => [ [ local => $repo ] ],
			conninfo => $conn,
			create_slot => 1,
			extra => "    retention: { full: 1 }\n"
			  . "    backup: { chunk_size: 256KiB }\n"
			  . ($bin ? "    pg_bindir: $bin\n" : ''));
	};
	my $config = write_config($cluster_yaml->($conninfo), "$tmp/pgark.yaml");
	my $standby_config = write_config(
		$cluster_yaml->("host=$h port=" . $standby->port . ' dbname=postgres'),
		"$tmp/pgark-standby.yaml");

	sub_sql($primary)->('CREATE TABLE t (id serial PRIMARY KEY, xid bigint, note text)');
	my $tsdir = "$tmp/ts_primary";
	make_path($tsdir);
	my $sql = sub_sql($primary);
	$sql->("CREATE TABLESPACE ts1 LOCATION '$tsdir'");
	$sql->('CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE ts1');
	$sql->("INSERT INTO in_ts SELECT g, md5(g::text) FROM generate_series(1, 5000) g");
	my $tsoid = $sql->("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");

	# --- receive ------------------------------------------------------------------------

	my $first_seg = $sql->('SELECT pg_walfile_name(pg_current_wal_lsn())');
	my $rx = receiver_start($config, name => "pg$major");
	ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60),
		'the receiver streams from the primary')
	  or diag(receiver_log($rx));
	like(receiver_log($rx), qr/created replication slot "pgark_main"/, 'through the slot it created');
	is($sql->("SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_main'"),
		't', 'the slot is in use');

	my %row;    # id -> { xid, ts, us }
	my $workload = sub {
		my ($node, $n, $note) = @_;
		my @ids;
		for (1 .. $n)
		{
			my $id = $node->safe_psql('postgres',
				"INSERT INTO t (xid, note) VALUES (txid_current(), '$note') RETURNING id");
			# The commit time is known once committed; the UTC text gives exact microseconds.
			my ($xid, $ts, $utc, $lsn) = split /\|/, $node->safe_psql('postgres',
				"SELECT xmin::text, pg_xact_commit_timestamp(xmin), "
				  . "to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
				  . "pg_current_wal_insert_lsn() FROM t WHERE id = $id");
			my $us = utc_us($utc);
			$row{$id} = { xid => $xid, ts => $ts, us => $us, lsn => $lsn };
			push @ids, $id;
		}
		return @ids;
	};
	# A dropped table: 15 and later log the statistics it drops in the commit record,
	# whose item grew in 18.
	my $drop = sub { $_[0]->safe_psql('postgres', "CREATE TABLE gone_$_[1] (a int); INSERT INTO gone_$_[1] VALUES (1); DROP TABLE gone_$_[1]") };

	my @a = $workload->($primary, 4, 'a');
	$drop->($primary, 'a');

	# --- backup from the primary, with a tablespace -------------------------------------

	my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
	is($r->{rc}, 0, 'backup from the primary') or diag($r->{stderr});
	my $b1 = eval { decode_json($r->{stdout}) } // {};
	cmp_ok($b1->{wal_segments} // 0, '>=', 1, "it archived its WAL ($b1->{wal_segments} segments)");

	# --- restore --start refuses another major's server before it writes anything -------

	my $fake = "$tmp/bin12";
	write_file("$fake/pg_ctl", "#!/bin/sh\necho 'pg_ctl (PostgreSQL) 12.22'\n", 0755);
	my @wrong = ([ "pg_bindir $fake", $fake, qr/PostgreSQL 12\.22 \("\Q$fake\E\/pg_ctl"\)/ ]);
	# Without pg_bindir, only 15 is installed where restore looks (Debian's layout, PATH).
	push @wrong, [ 'no pg_bindir', '', qr/PostgreSQL 15\.\d+ \("[^"]*\/pg_ctl"\)/ ] if $major != 15;
	for my $w (@wrong)
	{
		my ($what, $bin, $named) = @$w;
		my $cfg = write_config($cluster_yaml->($conninfo, $bin), "$tmp/pgark-wrong.yaml");
		my $pgdata = "$tmp/wrong_major";
		$r = run_pgark([ '--config', $cfg, 'restore', '--pgdata', $pgdata, '--start', '--wait',
			'--tablespace-map', "$tsoid=$tmp/ts_wrong" ]);
		is($r->{rc}, 2, "restore --start with $what: exit 2");
		like($r->{stderr}, qr/restore --start would run $named on a backup of PostgreSQL $major/,
			"$what: naming both majors");
		ok(!-e $pgdata && !-e "$tmp/ts_wrong", "$what: nothing was written");
	}

	# --- a standby, seeded by pgark restore ---------------------------------------------

	$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $standby->data_dir,
		'--tablespace-map', "$tsoid=$tmp/ts_standby" ]);
	is($r->{rc}, 0, 'restore of the backup as the seed of a standby') or diag($r->{stderr});
	write_file($standby->data_dir . '/standby.signal', '');
	$standby->append_conf('postgresql.conf',
		"port = " . $standby->port . "\nprimary_conninfo = 'host=$h port="
		  . $primary->port . " application_name=standby$major'\n");
	$standby->start;
	$primary->wait_for_catchup("standby$major");
	is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'a hot standby');
	# The receiver's slot, for after the promotion.
	$standby->safe_psql('postgres', "SELECT pg_create_physical_replication_slot('pgark_main', true)");

	# Whole-second stop times: the next rows a second past the backup's end.
	wait_past_stop_time($b1->{stop_time});

	# --- load while the receiver is restarted and killed ---------------------------------

	# A new segment: its time index's first commit is this workload's first.
	$sql->('SELECT pg_switch_wal()');
	my @b = $workload->($primary, 3, 'b');
	is(receiver_stop($rx)->{rc}, 0, 'the receiver stops on SIGTERM');
	push @b, $workload->($primary, 3, 'b');
	$rx = receiver_start($config, name => "pg$major");
	push @b, $workload->($primary, 2, 'b');
	$drop->($primary, 'b');
	ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'streaming again');
	$sql->("CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, 40000) g");
	kill('KILL', $rx->{pid});
	is(receiver_wait_exit($rx, 10), 128 + 9, 'the receiver killed with SIGKILL');
	push @b, $workload->($primary, 2, 'b');
	$rx = receiver_start($config, name => "pg$major");
	my $rp = $sql->("SELECT pg_create_restore_point('rp_$major')");
	my @after_rp = $workload->($primary, 2, 'c');

	# --- a backup from the standby -------------------------------------------------------

	$primary->wait_for_catchup("standby$major");
	$r = run_pgark([ '--config', $standby_config, 'backup', '--no-progress', '--json',
		'--label', "standby$major" ]);
	is($r->{rc}, 0, 'backup from the hot standby') or diag($r->{stderr});
	my $b2 = eval { decode_json($r->{stdout}) } // {};
	like($r->{stderr}, qr/is not complete .* as in a backup from a standby: it is kept in the backup but not archived/,
		'its last WAL segment, which the standby has only in part, is kept but not archived');
	wait_past_stop_time($b2->{stop_time});
	$drop->($primary, 'c');
	my @c = $workload->($primary, 3, 'c');    # the last commit of its segment

	# Close the segment and see that each one from the first is in the repository as the
	# primary has it: no gap from the restart or the kill.
	my $last_seg = $sql->('SELECT pg_walfile_name(pg_current_wal_lsn())');
	$sql->('SELECT pg_switch_wal()');
	ok(poll_until(sub { -f "$repo/main/wal/00000001/$last_seg" }, 60), "the receiver archived up to $last_seg");
	my (undef, $from) = seg_of_name($first_seg);
	my (undef, $to) = seg_of_name($last_seg);
	my @bad = wal_mismatches($primary->data_dir . '/pg_wal', $from, $to, $repo);
	is_deeply(\@bad, [], "segments $first_seg .. $last_seg: all archived, equal to the primary's");

	# wal-push of a completed segment into a repository of its own
	my $push_config = write_config(
		receiver_config(spool => "$tmp/spool2", repos => [ [ pushed => "$tmp/repo_push" ] ],
			conninfo => "host=$h port=" . $primary->port), "$tmp/pgark-push.yaml");
	$r = run_pgark([ '--config', $push_config, 'wal-push', $primary->data_dir . "/pg_wal/$last_seg" ]);
	is($r->{rc}, 0, "wal-push $last_seg") or diag($r->{stderr});
	my $pushed = repo_cat("$tmp/repo_push", 'main', "wal/00000001/$last_seg");
	ok($pushed->{rc} == 0 && $pushed->{stdout} eq slurp_bytes($primary->data_dir . "/pg_wal/$last_seg"),
		'the pushed segment reads back equal');

	# --- restores to three exact targets -------------------------------------------------

	my @all = sort { $a <=> $b } keys %row;
	my $expect = sub { my ($pred) = @_; join(',', grep { $pred->($row{$_}) } @all) };
	my $n_restore = 0;
	my $restore = sub {
		my ($what, $args, $want, %o) = @_;
		my $node = PostgreSQL::Test::Cluster->new("r${major}_" . ++$n_restore, install_path => $install);
		my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
			'--tablespace-map', "$tsoid=$tmp/ts_r$n_restore",
			@$args, '--start', '--wait', '--port', $node->port ]);
		is($res->{rc}, 0, "restore to $what: --start --wait exit 0") or diag($res->{stderr});
		$node->_update_pid(-1);
		if (defined $want)
		{
			like($res->{stdout}, qr/recovery promoted/, "$what: recovery promoted");
			is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
				$want, "$what: exactly the rows committed up to the target");
		}
		$o{also}->($node, $res) if $o{also};
		$node->stop;
		return $res;
	};
	my $kt = $b[4];
	$restore->("time $row{$kt}{ts}", [ '--target-time', $row{$kt}{ts}, '--target-action', 'promote' ],
		$expect->(sub { $_[0]{us} <= $row{$kt}{us} }));
	# (restore picks the newest backup for a name or an xid, whatever their position:
	# the standby's backup was taken after the restore point.)
	$restore->("restore point rp_$major",
		[ '--backup', $b1->{label}, '--target-name', "rp_$major", '--target-action', 'promote' ],
		$expect->(sub { $_[0]{xid} <= $row{ $b[-1] }{xid} }));
	my $kx = $c[1];
	$restore->("xid $row{$kx}{xid} from the standby's backup",
		[ '--backup', "standby$major", '--target-xid', $row{$kx}{xid}, '--target-action', 'promote' ],
		$expect->(sub { $_[0]{xid} <= $row{$kx}{xid} }),
		also => sub {
			my ($node, $res) = @_;
			like($res->{stdout}, qr/restored backup "standby$major"/, 'the standby\'s backup was restored');
			is($node->safe_psql('postgres', 'SELECT count(*) FROM in_ts'), '5000', 'with its tablespace');
		});

	$restore->('immediate, the primary\'s backup',
		[ '--backup', $b1->{label}, '--target', 'immediate', '--target-action', 'promote' ],
		join(',', @a));
	# An LSN just after a commit, the server shut down there: the state in its control
	# file (13 to 17's layout, or 18's) says it reached the target.
	my $kl = $c[1];
	$restore->("LSN $row{$kl}{lsn}, action shutdown",
		[ '--target-lsn', $row{$kl}{lsn}, '--target-action', 'shutdown' ], undef,
		also => sub {
			my ($node, $res) = @_;
			like($res->{stdout},
				qr/recovery reached the target and the server shut down: recovery stopping after WAL location \(LSN\) "\Q$row{$kl}{lsn}\E"/,
				'the server shut down at the LSN, as its control file says');
		});

	# --- promotion: the receiver follows onto timeline 2 ---------------------------------

	$primary->wait_for_catchup("standby$major");
	$primary->stop('fast');
	ok(poll_until(sub { receiver_log($rx) =~ /reconnecting in/ }, 60), 'the receiver notices the primary is gone');
	$standby->promote;
	$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
	ok(poll_until(sub { ((read_status($sdir) // {})->{timeline} // 0) == 2 }, 90),
		'the receiver follows the promoted standby onto timeline 2')
	  or diag(receiver_log($rx));
	ok(poll_until(sub { -f "$repo/main/wal/00000002.history" }, 30), '00000002.history archived');
	my @d = $workload->($standby, 3, 'd');
	# Several segments after the last backup, for wal-fetch's read-ahead to serve.
	my $last2;
	for my $i (1 .. 3)
	{
		$standby->safe_psql('postgres', "INSERT INTO in_ts SELECT g, 'd' FROM generate_series(5001 + ($i - 1) * 100, 5000 + $i * 100) g");
		$last2 = $standby->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn())');
		$standby->safe_psql('postgres', 'SELECT pg_switch_wal()');
	}
	ok(poll_until(sub { -f "$repo/main/wal/00000002/$last2" }, 60), "timeline 2 archived up to $last2");

	@all = sort { $a <=> $b } keys %row;
	$restore->('latest, across the promotion', [], join(',', @all),
		also => sub {
			my ($node) = @_;
			is($node->safe_psql('postgres', 'SELECT count(*) FROM in_ts'), '5300',
				'the tablespace table with the rows written on timeline 2');
			is($node->safe_psql('postgres', "SELECT timeline_id FROM pg_control_checkpoint()"), '3',
				'a new timeline after the promotion of timeline 2');
			like(slurp_file($node->data_dir . '/pgark-start.log'), qr/from the read-ahead cache/,
				'segments came from wal-fetch\'s read-ahead cache');
		});

	# --- info, check, verify, expire ---------------------------------------------------------

	$r = run_pgark([ '--config', $config, 'info', '--json' ]);
	is($r->{rc}, 0, 'info --json') or diag($r->{stderr});
	my $info = eval { decode_json($r->{stdout}) } // {};
	like($r->{stdout}, qr/"pg_major"\s*:\s*$major\b/, "info: the repository is bound to PostgreSQL $major");

	$r = run_pgark([ '--config', $config, 'check' ]);
	is($r->{rc}, 0, 'check: every check passes') or diag($r->{stdout} . $r->{stderr});
	like($r->{stdout}, qr/^ok\s+slot\s+replication slot "pgark_main" exists/m, 'check reads the slot');
	like($r->{stdout}, qr/^ok\s+slot_active\s+replication slot "pgark_main" is in use/m, 'and sees it in use');

	my $verify = sub { my $v = run_pgark([ '--config', $config, 'verify', '--json' ]); ($v, eval { decode_json($v->{stdout}) } // {}) };
	my ($v, $vj) = $verify->();
	is($v->{rc}, 0, 'verify: no problem') or diag($v->{stdout} . $v->{stderr});
	my ($vr) = @{ $vj->{repositories} // [] };
	is($vr->{backups}, 2, 'verify read both backups');
	cmp_ok($vr->{segments} // 0, '>', 5, "and decoded the WAL ($vr->{segments} segments)");
	is($vr->{segments_without_time_index}, 0, 'every segment has its time index');

	# The time indexes hold the server's own commit times and restore point.
	my ($matched, @tbad) = time_index_check($repo, \%row, "rp_$major", $rp);
	cmp_ok($matched, '>=', 2, "the time indexes name $matched of the test's commits");
	is_deeply(\@tbad, [], 'with the server\'s commit times to the microsecond, and the restore point\'s LSN');

	$r = run_pgark([ '--config', $config, 'expire' ]);
	is($r->{rc}, 0, 'expire (retention full: 1)') or diag($r->{stderr});
	ok(!-e "$repo/main/backups/$b1->{label}/manifest.json", 'the older backup is gone');
	ok(-e "$repo/main/backups/standby$major/manifest.json", 'the standby\'s backup stays');
	($v, $vj) = $verify->();
	is($v->{rc}, 0, 'verify after expire: no problem') or diag($v->{stdout});

	# --- verify catches damage ---------------------------------------------------------

	my $m = repo_cat($repo, 'main', "backups/standby$major/manifest.json");
	my ($ctl) = grep { $_->{path} eq 'global/pg_control' } map { eval { decode_json($_) } // {} } split /\n/, $m->{stdout};
	my $chunk = $ctl->{chunks}[0];
	my $cfile = "$repo/main/chunks/" . substr($chunk, 0, 2) . "/$chunk";
	my $saved = slurp_bytes($cfile);
	flip_byte($cfile);
	($v, $vj) = $verify->();
	is($v->{rc}, 3, 'a byte flipped in a chunk: verify exits 3');
	is_deeply([ map { "$_->{file} $_->{chunk}" } @{ $vj->{problems} // [] } ], ["global/pg_control $chunk"],
		'naming the file and the chunk');
	write_file($cfile, $saved, 0600);

	my ($tli2, $s2) = seg_of_name($last2);
	my $gone = seg_name(2, $s2 - 1);
	my $gpath = "$repo/main/wal/00000002/$gone";
	my $gsaved = slurp_bytes($gpath);
	unlink($gpath) or die "unlink $gpath: $!";
	($v, $vj) = $verify->();
	is($v->{rc}, 3, 'a segment missing: verify exits 3');
	is_deeply([ map { $_->{segment} // '' } @{ $vj->{problems} // [] } ], [$gone], "naming $gone");
	write_file($gpath, $gsaved, 0600);
	is(($verify->())[0]{rc}, 0, 'clean again once repaired');

	# --- a drill to latest, on this major's server ------------------------------------------

	my $dr = run_pgark([ '--config', $config, 'drill', '--json', '--repo', 'local' ]);
	is($dr->{rc}, 0, "drill to latest with PostgreSQL $major: exit 0") or diag($dr->{stdout} . $dr->{stderr});
	my $drec = (eval { decode_json($dr->{stdout}) } // {})->{drills}[0] // {};
	my %dchk = map { ($_->{name} => $_->{result}) } @{ $drec->{checks} // [] };
	is_deeply([ map { $dchk{$_} // 'none' } qw(restore target pg_class amcheck) ], [qw(ok ok ok ok)],
		'restore, target, pg_class and amcheck pass');
	like($dchk{checksums} // '', qr/^(ok|skipped)$/, "pg_checksums ran or was skipped ($dchk{checksums})");
	is($drec->{pg_major}, $major, "the drill's server was PostgreSQL $major");
	ok(!-e "$tmp/spool/main/drill", 'the scratch directory is gone');

	is(receiver_stop($rx)->{rc}, 0, 'the receiver stops cleanly');
	$standby->stop;
	done_testing();
	return;
}

sub sub_sql
{
	my ($node) = @_;
	return sub { $node->safe_psql('postgres', $_[0]) };
}

sub flip_byte
{
	my ($path) = @_;
	open(my $fh, '+<:raw', $path) or croak "open $path: $!";
	my $at = int((-s $path) / 2);
	seek($fh, $at, 0);
	read($fh, my $byte, 1);
	seek($fh, $at, 0);
	print $fh chr(ord($byte) ^ 0xff);
	close($fh);
	return;
}

# Unix microseconds of "YYYY-MM-DD HH:MM:SS.UUUUUU" (UTC), exactly.
sub utc_us
{
	my ($text) = @_;
	my ($y, $mo, $d, $hh, $mi, $ss, $us) = $text =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)\.(\d{6})$/
	  or croak "not a UTC timestamp: \"$text\"";
	return Time::Local::timegm($ss, $mi, $hh, $d, $mo - 1, $y) * 1_000_000 + $us;
}

# What the time indexes of timeline 1 say: every first and last commit they name whose
# xid is one of %$row must carry that row's commit time to the microsecond; returns the
# number of such commits and a list of mismatches. The restore point $rp_name must be
# there with the end LSN the server gave for it.
sub time_index_check
{
	my ($repo, $row, $rp_name, $rp_lsn) = @_;
	my %by_xid = map { $row->{$_}{xid} => $row->{$_}{us} } keys %$row;
	my ($matched, @bad, $rp_found) = (0);
	for my $idx (sort glob("$repo/main/wal/00000001/*.idx"))
	{
		my ($name) = $idx =~ m{/([0-9A-F]{24}(?:\.partial)?)\.idx$} or next;
		my $r = repo_cat($repo, 'main', "wal/00000001/$name.idx");
		push(@bad, "$name.idx: $r->{stderr}"), next if $r->{rc};
		my $j = eval { decode_json($r->{stdout}) } // {};
		for my $c (grep { defined } $j->{first_commit}, $j->{last_commit})
		{
			next unless exists $by_xid{ $c->{xid} };
			$matched++;
			push @bad, "$name: xid $c->{xid} at $c->{time_us}, the server says $by_xid{ $c->{xid} }"
			  if $c->{time_us} != $by_xid{ $c->{xid} };
		}
		for my $p (@{ $j->{restore_points} // [] })
		{
			$rp_found = $p->{end_lsn} if $p->{name} eq $rp_name;
		}
	}
	push @bad, "restore point $rp_name: " . ($rp_found // 'not in any index') . ", the server said $rp_lsn"
	  unless ($rp_found // '') eq $rp_lsn;
	return ($matched, @bad);
}

1;

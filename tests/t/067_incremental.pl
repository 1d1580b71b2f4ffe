# Block-level incremental backups (issue 24) on PostgreSQL 17 and 18, each skipped unless
# its major is in PGARK_TEST_MAJORS (default: every supported major):
#
#  - full, then changes (updates spread over a table, a truncated table, a dropped and a
#    new relation, a new database; then the end of a table vacuumed away), an incremental, more changes, a second incremental
#    (to the first); each backup restored alone to "immediate" and to a time after it,
#    every table equal to the source's at that moment (md5 of the ordered rows);
#  - the incrementals receive only the changed blocks and take the rest from the parent;
#    the second's parent is the first, whose backup_manifest (rewritten to name the files
#    a restore writes) the server accepted, checksum and all;
#  - a restored incremental's backup_label has no "INCREMENTAL FROM" lines and its
#    backup_manifest lists exactly the files restored, with their sizes;
#  - expire keeping only the newest backup (an incremental) removes its parents and the
#    chunks only they named: it still restores exactly;
#  - an incremental killed mid-stream leaves nothing listed, and the next one succeeds;
#  - the server's WAL summaries gone since the parent (it refuses), --full, and
#    summarize_wal off: a full backup that says why (info log and --json); the full one
#    after the incrementals names most chunks from the fingerprint cache they kept.
#
# 17 runs on an unencrypted repository (the parent's chunk names are its plaintext
# SHA-256s), 18 on an encrypted one (the parent's unchanged chunks are read back to hash).
use strict;
use warnings;

use File::Find ();
use File::Path qw(make_path);
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use PgarkMajors;
use PgarkTest;

my @majors = grep { major_selected($_) } (17, 18);
# The changes below touch more than a fifth of these small clusters' ranges (a new database
# alone is a fifth): always incremental here, whatever the WAL summaries say (068 tests
# that judgement).
$ENV{PGARK_INCR_MAX_CHANGED} = 1;
plan skip_all => 'neither PostgreSQL 17 nor 18 is in PGARK_TEST_MAJORS' unless @majors;

scenario($_) for @majors;
done_testing();

sub scenario
{
	my ($major) = @_;
	my $encrypted = $major == 18;
	my $install = pg_install_path($major);
	my $bindir = "$install/bin";
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $repo = "$tmp/repo";

	my $pg = PostgreSQL::Test::Cluster->new("incr$major", install_path => $install);
	$pg->init(allows_streaming => 1);
	$pg->append_conf('postgresql.conf', "summarize_wal = on\nautovacuum = off\n");
	$pg->start;
	my $h = $pg->host;
	my $sql = sub { $pg->safe_psql($_[1] // 'postgres', $_[0]) };

	my %cfg = (
		spool => "$tmp/spool",
		repos => [ [ local => $repo ] ],
		conninfo => "host=$h port=" . $pg->port . ' dbname=postgres',
		create_slot => 1,
		# 64 KiB chunks: a few changed blocks leave most chunks of a file unchanged.
		extra => "    backup: { chunk_size: 64KiB }\n    pg_bindir: $bindir\n");
	if ($encrypted)
	{
		write_file("$tmp/passphrase", "incremental $major\n", 0600);
		$cfg{passphrase_file} = "$tmp/passphrase";
	}
	my $config = write_config(receiver_config(%cfg), "$tmp/pgark.yaml");

	$sql->('CREATE TABLE spread (id int PRIMARY KEY, v text)');
	$sql->("INSERT INTO spread SELECT g, md5(g::text) FROM generate_series(1, 60000) g");
	$sql->("CREATE TABLE shrink (id int, pad text)");
	$sql->("INSERT INTO shrink SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
	$sql->("CREATE TABLE doomed AS SELECT g FROM generate_series(1, 5000) g");
	$sql->("CREATE TABLE still AS SELECT g, md5(g::text) AS m FROM generate_series(1, 30000) g");

	# What a restore must give: every table of every database (or its absence).
	my @tables = qw(spread shrink doomed still fresh);
	my $state = sub {
		my ($node) = @_;
		my @dbs = split /\n/, $node->safe_psql('postgres',
			"SELECT datname FROM pg_database WHERE datname NOT LIKE 'template%' ORDER BY 1");
		my @out;
		for my $db (@dbs)
		{
			for my $t (@tables, 'extra')
			{
				my $there = $node->safe_psql($db, "SELECT to_regclass('$t') IS NOT NULL");
				push @out, "$db.$t="
				  . ($there eq 't'
					  ? $node->safe_psql($db, "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM $t t")
					  : 'absent');
			}
		}
		return join(' ', @out);
	};

	my $rx = receiver_start($config, name => "incr$major");
	ok(poll_until(sub { (read_status("$tmp/spool/main") // {})->{connected} }, 60),
		"$major: the receiver streams")
	  or diag(receiver_log($rx));

	# Labels of their own: several backups may start within one second (the time-based
	# label would be taken); the parent is the newest by stop LSN, not by label.
	my $nbackup = 0;
	my $backup = sub {
		my (@args) = @_;
		push(@args, '--label', sprintf('m%d-%s-%02d', $major,
				POSIX::strftime('%Y%m%dT%H%M%SZ', gmtime), ++$nbackup))
		  unless grep { $_ eq '--label' } @args;
		my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json', @args ]);
		my $j = eval { decode_json($r->{stdout}) } // {};
		return ($r, $j);
	};
	# A moment after everything committed so far, and what the source holds then; the
	# next commit a second later (targets are whole-second stop times apart).
	my $mark = sub {
		my $s = $state->($pg);
		Time::HiRes::sleep(0.2);
		my $ts = $sql->("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
		Time::HiRes::sleep(0.2);
		return ($s, $ts);
	};

	# --- full ---------------------------------------------------------------------------

	my ($r, $b1) = $backup->();
	is($r->{rc}, 0, "$major: first backup") or diag($r->{stderr});
	ok(!$b1->{incremental}, "$major: the first backup is full");
	like($b1->{reason} // '', qr/^no earlier backup of PostgreSQL 17 or later in repository "local"$/,
		"$major: because there is no parent");
	like($r->{stderr}, qr/info +backup "\Q$b1->{label}\E" is a full backup: no earlier backup/,
		"$major: said at info level");
	my $s1 = $state->($pg);
	wait_past_stop_time($b1->{stop_time});

	# --- changes, incremental -----------------------------------------------------------

	$sql->("UPDATE spread SET v = 'a' || id WHERE id % 997 = 0");
	$sql->('TRUNCATE shrink');
	$sql->("INSERT INTO shrink VALUES (1, 'after truncate')");
	$sql->('DROP TABLE doomed');
	$sql->("CREATE TABLE fresh AS SELECT g, g * 2 AS d FROM generate_series(1, 4000) g");
	$sql->('CREATE DATABASE db2');
	$sql->("CREATE TABLE extra AS SELECT g FROM generate_series(1, 1000) g", 'db2');
	my ($s1t, $t1) = $mark->();

	($r, my $b2) = $backup->();
	is($r->{rc}, 0, "$major: second backup") or diag($r->{stderr});
	ok($b2->{incremental}, "$major: the second backup is incremental");
	is($b2->{parent}, $b1->{label}, "$major: to the first");
	is($b2->{reason}, undef, "$major: no reason given for an incremental");
	like($r->{stderr}, qr/info +backup "\Q$b2->{label}\E" is incremental to backup "\Q$b1->{label}\E"/,
		"$major: said at info level");
	cmp_ok($b2->{incremental_files}, '>', 100, "$major: relation files came incrementally ($b2->{incremental_files})");
	cmp_ok($b2->{changed_blocks}, '<', 1000, "$major: with few changed blocks ($b2->{changed_blocks})");
	if ($encrypted)
	{
		# No plain repository: the parent's plaintext SHA-256s are in no manifest, so its
		# unchanged chunks are read back from the repository and named again.
		is($b2->{parent_chunks}, 0, "$major: every chunk of them read back from the parent ($b2->{patched_chunks})");
	}
	else
	{
		cmp_ok($b2->{parent_chunks}, '>', 10 * $b2->{patched_chunks},
			"$major: most of their chunks taken from the parent ($b2->{parent_chunks} taken, $b2->{patched_chunks} rebuilt)");
	}
	my $s2 = $state->($pg);
	is($s2, $s1t, "$major: (nothing changed between the mark and the backup)");
	wait_past_stop_time($b2->{stop_time});

	# --- more changes, a second incremental --------------------------------------------

	$sql->("UPDATE spread SET v = 'b' || id WHERE id % 1009 = 3");
	# the end of a table removed by VACUUM: a truncation length below the parent's size
	$sql->("DELETE FROM still WHERE g > 21000");
	$sql->("VACUUM still");
	$sql->("INSERT INTO shrink SELECT g, 'again' FROM generate_series(2, 300) g");
	$sql->("DELETE FROM still WHERE g % 2 = 0");
	$sql->("INSERT INTO extra SELECT g FROM generate_series(1001, 1500) g", 'db2');
	my ($s2t, $t2) = $mark->();

	($r, my $b3) = $backup->();
	is($r->{rc}, 0, "$major: third backup") or diag($r->{stderr});
	ok($b3->{incremental}, "$major: incremental");
	is($b3->{parent}, $b2->{label},
		"$major: to the first incremental, whose rewritten backup_manifest the server accepted");
	my $s3 = $state->($pg);
	is($s3, $s2t, "$major: (nothing changed between the mark and the backup)");
	wait_past_stop_time($b3->{stop_time});

	$sql->("UPDATE spread SET v = 'c' WHERE id BETWEEN 100 AND 400");
	$sql->("DROP TABLE fresh");
	my ($s3t, $t3) = $mark->();
	# A commit after the last target, in a segment the receiver has archived.
	$sql->("CREATE TABLE after_all (a int)");
	my $seg = $sql->('SELECT pg_walfile_name(pg_current_wal_lsn())');
	$sql->('SELECT pg_switch_wal()');
	ok(poll_until(sub { -e "$repo/main/wal/00000001/$seg" }, 60), "$major: the WAL is archived")
	  or diag(receiver_log($rx));

	# --- each backup restored alone -----------------------------------------------------

	is($r = run_pgark([ '--config', $config, 'verify', '--json' ])->{rc}, 0,
		"$major: verify checks every backup, incrementals included") or diag($r->{stderr});

	my $n = 0;
	my $restore = sub {
		my ($label, $what, $want, @target) = @_;
		my $node = PostgreSQL::Test::Cluster->new("incr${major}_r" . ++$n, install_path => $install);
		my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
			'--backup', $label, @target, '--target-action', 'promote', '--start', '--wait',
			'--port', $node->port ]);
		is($res->{rc}, 0, "$major: restore $what") or diag($res->{stderr});
		$node->_update_pid(-1);
		is($state->($node), $want, "$major: $what: every table as the source had it");
		$node->stop;
	};
	$restore->($b1->{label}, 'the full backup to immediate', $s1, '--target', 'immediate');
	$restore->($b1->{label}, 'the full backup to a time after it', $s1t, '--target-time', $t1);
	$restore->($b2->{label}, 'the first incremental to immediate', $s2, '--target', 'immediate');
	$restore->($b2->{label}, 'the first incremental to a time after it', $s2t, '--target-time', $t2);
	# Retention keeping the newest backup alone: the parents go, with every chunk no other
	# backup names; the incremental still restores on its own.
	my $chunks = sub { my $c = 0; File::Find::find(sub { $c++ if -f $_ }, "$repo/main/chunks"); $c };
	my $before = $chunks->();
	my $keep1 = write_config(receiver_config(%cfg, extra => $cfg{extra} . "    retention: { full: 1 }\n"),
		"$tmp/pgark-keep1.yaml");
	$r = run_pgark([ '--config', $keep1, 'expire' ]);
	is($r->{rc}, 0, "$major: expire keeping one backup") or diag($r->{stderr});
	$r = run_pgark([ '--config', $config, 'info', '--json' ]);
	my $info = eval { decode_json($r->{stdout}) } // {};
	is(join(',', map { $_->{label} } @{ $info->{repositories}[0]{backups} // [] }), $b3->{label},
		"$major: the full backup and the first incremental are gone");
	is($info->{repositories}[0]{backups}[0]{parent}, $b2->{label}, "$major: info names the parent it was taken against");
	my $after = $chunks->();
	cmp_ok($after, '<', $before, "$major: and chunks only they named ($before chunks, then $after)");
	$restore->($b3->{label}, 'the second incremental to immediate', $s3, '--target', 'immediate');
	$restore->($b3->{label}, 'the second incremental to a time after it', $s3t, '--target-time', $t3);

	# What pg_verifybackup would check (no pg_verifybackup of 17 or 18 here: the bundles
	# lack it, Debian's 15 reads no version 2 manifest): the backup_manifest laid down
	# has a valid checksum (the server checked it as the third's parent) and lists
	# exactly the files restored, with their sizes.
	my $dir = "$tmp/manifest_check";
	$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $dir, '--backup', $b3->{label} ]);
	is($r->{rc}, 0, "$major: restore of the second incremental, not started") or diag($r->{stderr});
	my $m = decode_json(slurp_bytes("$dir/backup_manifest"));
	my %listed = map { $_->{Path} => $_->{Size} } @{ $m->{Files} };
	# (pg_verifybackup skips what restore writes itself, and pg_wal: WAL-Ranges cover it.)
	my $skipped = qr{^(?:backup_manifest$|pg_wal/|pgark-restored-config/|recovery\.signal$|postgresql\.auto\.conf$)};
	my @wrong = grep { !/$skipped/ && (!-f "$dir/$_" || -s _ != $listed{$_}) } sort keys %listed;
	is("@wrong", '', "$major: every file of the backup_manifest restored with its size");
	is(join(',', grep { /INCREMENTAL\./ } keys %listed), '', "$major: no INCREMENTAL file listed");
	my @found;
	File::Find::find({ no_chdir => 1, wanted => sub {
		return unless -f $_;
		(my $rel = $_) =~ s{^\Q$dir\E/}{};
		push @found, $rel unless $rel =~ $skipped;
	} }, $dir);
	my @extra = grep { !exists $listed{$_} } @found;
	is("@extra", '', "$major: no restored file missing from it");
	unlike(slurp_bytes("$dir/backup_label"), qr/INCREMENTAL/, "$major: backup_label says nothing of INCREMENTAL");

	# --- an incremental killed mid-stream ----------------------------------------------

	my $log = "$tmp/killed.log";
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		$ENV{PGARK_TEST_MAX_RATE} = 64;    # kB/s: the WAL segment alone takes minutes
		open(STDOUT, '>', '/dev/null');
		open(STDERR, '>', $log);
		exec(pgark_bin(), '--config', $config, '--log-level', 'detail', 'backup', '--no-progress',
			'--label', "killed$major") or POSIX::_exit(127);
	}
	ok(poll_until(sub { -s $log && slurp_bytes($log) =~ /receiving archive "base.tar"/ }, 120),
		"$major: an incremental under way") or diag(slurp_bytes($log));
	like(slurp_bytes($log), qr/is incremental to backup "\Q$b3->{label}\E"/, "$major: (it is incremental)");
	kill('KILL', $pid);
	waitpid($pid, 0);
	$r = run_pgark([ '--config', $config, 'info', '--json' ]);
	$info = eval { decode_json($r->{stdout}) } // {};
	is(join(',', map { $_->{label} } @{ $info->{repositories}[0]{backups} // [] }), $b3->{label},
		"$major: the killed backup is not listed");
	($r, my $b4) = $backup->();
	is($r->{rc}, 0, "$major: the next backup after the killed one") or diag($r->{stderr});
	ok($b4->{incremental} && $b4->{parent} eq $b3->{label}, "$major: incremental to the second");
	$restore->($b4->{label}, 'it to immediate', $state->($pg), '--target', 'immediate');

	# --- full backups, and why ----------------------------------------------------------

	# The server's WAL summaries no longer reaching back to the parent (here removed by
	# hand; wal_summary_keep_time does it in time): it refuses, the backup is full.
	# A summary ends at a checkpoint's redo point: make one after the parent's start and
	# wait for its summary, or the files removed may all end before the range the server
	# needs (it then summarizes that range afresh and the backup is incremental).
	$sql->('CREATE TABLE summary_boundary ()');
	$sql->('CHECKPOINT');
	ok( poll_until(
			sub {
				$sql->("SELECT summarized_lsn > '$b4->{start_lsn}' FROM pg_get_wal_summarizer_state()")
				  eq 't';
			},
			120),
		"$major: the WAL summaries reach past the parent's start");
	my $summaries = $pg->data_dir . '/pg_wal/summaries';
	unlink(glob("$summaries/*.summary"));
	($r, my $b4f) = $backup->();
	is($r->{rc}, 0, "$major: backup without the WAL summaries since the parent") or diag($r->{stderr});
	ok(!$b4f->{incremental}, "$major: full");
	like($b4f->{reason} // '',
		qr/^the server refused an incremental backup: command "BASE_BACKUP" failed on server "[^"]+": WAL summaries are required on timeline 1 from /,
		"$major: with the server's reason") or diag($r->{stderr});
	like($r->{stderr}, qr/info +backup "\Q$b4f->{label}\E" is a full backup: the server refused/,
		"$major: at info level");
	# The incrementals kept the fingerprints of the files the server sent as changed
	# blocks: this full backup names most chunks without hashing them.
	cmp_ok($b4f->{unchanged_chunks}, '>', $b4f->{chunks} / 2,
		"$major: a full backup after incrementals: $b4f->{unchanged_chunks} of $b4f->{chunks} chunks named from the fingerprint cache");

	($r, my $b5) = $backup->('--full');
	is($r->{rc}, 0, "$major: backup --full") or diag($r->{stderr});
	ok(!$b5->{incremental} && $b5->{reason} eq '--full was given', "$major: --full: full, saying why");
	$pg->append_conf('postgresql.conf', "summarize_wal = off\n");
	$pg->reload;
	poll_until(sub { $sql->('SHOW summarize_wal') eq 'off' }, 30);
	($r, my $b6) = $backup->();
	is($r->{rc}, 0, "$major: backup with summarize_wal off") or diag($r->{stderr});
	ok(!$b6->{incremental}, "$major: full");
	like($b6->{reason} // '', qr/^summarize_wal is off on the server/, "$major: saying why");
	like($r->{stderr}, qr/info +backup "\Q$b6->{label}\E" is a full backup: summarize_wal is off/,
		"$major: at info level");

	receiver_stop($rx);
	$pg->stop;
}

# One repository down never stops a backup in the others. A cluster writes to
# [local (posix), offsite (s3, on an s3rver)]; the s3rver is stopped and:
#  - `pgark backup` completes in local, drops offsite with an error naming it, and exits
#    4; --json says which repository failed and why; a restore from local alone has the
#    rows of the moment of the backup;
#  - `backup --repo local` backs up into local only (exit 0); an unknown --repo name is
#    exit 2 naming it; `--repo offsite` (the only one, down) is the old failure, exit 1;
#  - the s3rver back, `pgark copy --from local --to offsite` brings the missing backups
#    and their WAL: offsite then lists them, its manifest.json is the same object as
#    local's, `verify` passes, a restore from offsite alone has the same rows, and a
#    second copy has nothing to do; bad --from/--to names are exit 2; a copy stopped
#    before its manifest is completed by the next one without copying anything twice;
#  - S3 lost in the middle of a backup (after its chunks, before its manifests): the
#    backup completes in local, exit 4, its running marker leaves offsite when S3 is back
#    before the backup ends, and the catch-up (`pgark copy` without --from and
#    --to, as pgark-copy@.timer runs it) brings it to offsite.
use strict;
use warnings;

use File::Find;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo_local";

my $s3 = s3rver_start();
s3_create_bucket($s3, 'pgark-copy');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
log: { level: detail }
repos:
  local: { type: posix, path: $local }
  offsite:
    type: s3
    endpoint: $s3->{endpoint}
    allow_http: true
    bucket: pgark-copy
    access_key_id: $s3->{access_key}
    secret_access_key: $s3->{secret_key}
    retries: 1
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local, offsite]
    backup: { chunk_size: 256KiB }
EOF
mkdir("$tmp/spool") or die "mkdir: $!";

my $rows = "SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t";
sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");

# Both up: the repositories are created and hold a first backup.
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'a first backup into both repositories') or diag($r->{stderr});
my $first = eval { decode_json($r->{stdout}) } // {};
is_deeply([ map { "$_->{name}:$_->{status}" } @{ $first->{repositories} // [] } ],
	[ 'local:ok', 'offsite:ok' ], '--json: both ok');
is_deeply($first->{failed_repositories}, [], '--json: none failed');

# --- S3 down -----------------------------------------------------------------------------
s3rver_stop($s3);
sql("INSERT INTO t SELECT g, 'second ' || g FROM generate_series(20001, 30000) g");
my $want = sql($rows);

$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 4, 'S3 down: backup exits 4 (done, but not in every repository)')
  or diag($r->{stderr});
my $sum = eval { decode_json($r->{stdout}) } // {};
my $label = $sum->{label} // '?';
is_deeply([ map { "$_->{name}:$_->{status}" } @{ $sum->{repositories} // [] } ],
	[ 'local:ok', 'offsite:failed' ], '--json: local ok, offsite failed');
is_deeply($sum->{failed_repositories}, ['offsite'], '--json: failed_repositories names offsite');
my ($off) = grep { $_->{name} eq 'offsite' } @{ $sum->{repositories} // [] };
like($off->{error} // '', qr/repository "offsite"/, '--json: the error names the repository');
like($r->{stderr}, qr/repository "offsite" dropped from backup/, 'stderr: offsite dropped');
like($r->{stderr},
	qr/backup "\Q$label\E" of cluster "main" is not in repository "offsite"\n.*hint: .*pgark copy --from local --to offsite --backup \Q$label\E/s,
	'stderr: the backup is not in offsite, and how to copy it there');
ok(-f "$local/main/backups/$label/manifest.json", 'the backup is complete in local');

# Human form.
$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--label', 'human' ]);
is($r->{rc}, 4, 'S3 down, human form: exit 4');
like($r->{stdout}, qr/repository "local": .* stored/, 'human: local stored');
like($r->{stdout}, qr/repository "offsite": FAILED, the backup is not in it: .*offsite/,
	'human: offsite failed, with its error');

# --repo
$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json', '--repo', 'local',
	'--label', 'only-local' ]);
is($r->{rc}, 0, 'backup --repo local: exit 0 with S3 down') or diag($r->{stderr});
my $only = eval { decode_json($r->{stdout}) } // {};
is_deeply([ map { $_->{name} } @{ $only->{repositories} // [] } ], ['local'],
	'--repo local: only local');
$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--repo', 'local,nosuch' ]);
is($r->{rc}, 2, 'backup --repo with an unknown name: exit 2');
like($r->{stderr}, qr/repository "nosuch" is not a repository of cluster "main"/,
	'the unknown name is named');
like($r->{stderr}, qr/hint: the cluster's repositories are "local", "offsite"/,
	'and the hint lists the cluster\'s repositories');
ok(!-d "$local/main/backups/nosuch", 'nothing was written');
$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--repo', 'offsite' ]);
is($r->{rc}, 1, 'backup --repo offsite, offsite down: the old failure, exit 1');
like($r->{stderr}, qr/while opening repository "offsite".*\n.*backup of cluster "main" failed/s,
	'the old error');

# Restore from local alone: the rows of the backup.
my $rnum = 0;
sub restore_and_check
{
	my ($what, $expect, @args) = @_;
	my $node = PostgreSQL::Test::Cluster->new('r' . ++$rnum);
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--start', '--wait', '--port', $node->port, '--backup', $label,
		'--target', 'immediate', '--target-action', 'promote', @args ]);
	is($res->{rc}, 0, "$what: restore") or diag($res->{stderr});
	$node->_update_pid(1);
	is($node->safe_psql('postgres', $rows), $expect, "$what: the rows of the backup");
	$node->stop;
	return $res;
}
restore_and_check('from local, S3 down', $want, '--repo', 'local');

# --- S3 back: pgark copy -----------------------------------------------------------------
$s3 = s3rver_start(dir => $s3->{dir}, port => $s3->{port});

$r = run_pgark([ '--config', $config, 'copy', '--from', 'nosuch', '--to', 'offsite' ]);
is($r->{rc}, 2, 'copy --from an unknown repository: exit 2');
like($r->{stderr}, qr/repository "nosuch" is not a repository of cluster "main"/,
	'the unknown --from is named');
$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'elsewhere' ]);
is($r->{rc}, 2, 'copy --to an unknown repository: exit 2');
like($r->{stderr}, qr/repository "elsewhere" is not a repository of cluster "main"/,
	'the unknown --to is named');
$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'local' ]);
is($r->{rc}, 2, 'copy to the same repository: exit 2');
$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'offsite',
	'--backup', 'nosuch' ]);
is($r->{rc}, 2, 'copy --backup that --from lacks: exit 2');
like($r->{stderr}, qr/backup "nosuch" is not in repository "local"/, 'the backup is named');

$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'offsite',
	'--backup', $label, '--json' ]);
is($r->{rc}, 0, 'copy --backup LABEL from local to offsite') or diag($r->{stderr});
my $c = eval { decode_json($r->{stdout}) } // {};
is_deeply([ map { "$_->{label}:$_->{from}:$_->{to}" } @{ $c->{backups_copied} // [] } ],
	["$label:local:offsite"], 'copy --json: the backup copied');
ok(($c->{chunks_copied} // 0) > 0, 'the chunks offsite lacked were copied');
ok(($c->{chunks_present} // 0) > 0, 'those offsite held (from the first backup) were not');
ok(($c->{wal_segments_copied} // 0) > 0, 'and the WAL of the backup');

# The objects are stored as offsite stores them; both unencrypted, same codec: the same bytes.
sub s3_object
{
	my ($key) = @_;
	my $found;
	find(sub { $found = $File::Find::name if $File::Find::name =~ m{/pgark-copy/\Q$key\E(?:\._S3rver_object)?$} },
		$s3->{dir});
	return defined $found ? slurp_bytes($found) : undef;
}
my $m_local = slurp_bytes("$local/main/backups/$label/manifest.json");
my $m_s3 = s3_object("main/backups/$label/manifest.json");
ok(defined $m_s3, 'offsite holds the manifest of the backup');
ok(defined $m_s3 && $m_s3 eq $m_local, 'offsite\'s manifest.json is byte-identical to local\'s');

# A copy stopped before its manifest: the backup is not listed in offsite, and a new run
# completes it without copying again what is there.
is(HTTP::Tiny->new(timeout => 10)->delete(
	"$s3->{endpoint}/pgark-copy/main/backups/$label/manifest.json")->{status}, 204,
	'offsite\'s manifest.json removed, as if the copy had stopped before it');
$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'offsite',
	'--backup', $label, '--json' ]);
is($r->{rc}, 0, 'copy again') or diag($r->{stderr});
$c = eval { decode_json($r->{stdout}) } // {};
is_deeply([ map { $_->{label} } @{ $c->{backups_copied} // [] } ], [$label],
	'the backup was copied again (it was not listed)');
is($c->{chunks_copied}, 0, 'no chunk copied twice');
is($c->{wal_segments_copied}, 0, 'no WAL segment copied twice');
$m_s3 = s3_object("main/backups/$label/manifest.json");
ok(defined $m_s3 && $m_s3 eq $m_local, 'the manifest is back, byte-identical');

$r = run_pgark([ '--config', $config, 'verify', '--backup', $label ]);
is($r->{rc}, 0, 'verify --backup: clean in both repositories') or diag($r->{stdout} . $r->{stderr});
like($r->{stdout}, qr/offsite/, 'verify read offsite');

# The rest by the catch-up a timer runs (no --from/--to), then nothing left to do.
$r = run_pgark([ '--config', $config, 'copy', '--json' ]);
is($r->{rc}, 0, 'copy without --from/--to: every repository catches up') or diag($r->{stderr});
$c = eval { decode_json($r->{stdout}) } // {};
is_deeply([ sort map { "$_->{label}:$_->{from}:$_->{to}" } @{ $c->{backups_copied} // [] } ],
	[ 'human:local:offsite', 'only-local:local:offsite' ],
	'the two other backups were copied to offsite, nothing to local');
$r = run_pgark([ '--config', $config, 'copy', '--from', 'local', '--to', 'offsite' ]);
is($r->{rc}, 0, 'a second copy');
like($r->{stdout}, qr/^nothing to copy$/m, 'a second copy has nothing to do');

# --- S3 lost during a backup (its chunks stored, before its manifests) -------------------
# S3 comes back before the backup ends: its running marker goes from offsite too (else
# it would hold expire off there until stale, 10 min).
my $pause = "$tmp/pause";
my $pause_end = "$tmp/pause-end";
my ($out, $err) = ('', '');
my $h = IPC::Run::start([ pgark_bin(), '--config', $config, 'backup', '--no-progress', '--json',
		'--label', 'midway' ], '<', \undef, '>', \$out, '2>', \$err,
	init => sub {
		$ENV{PGARK_TEST_PAUSE_BEFORE_MANIFEST} = $pause;
		$ENV{PGARK_TEST_PAUSE_BEFORE_MARKERS_GONE} = $pause_end;
	});
ok(poll_until(sub { -e $pause || !$h->pumpable }), 'backup "midway" paused before its manifests')
  or diag($err);
s3rver_stop($s3);
unlink($pause);
ok(poll_until(sub { $h->pump_nb if $h->pumpable; -e $pause_end || !$h->pumpable }),
	'and again at its end, offsite dropped') or diag($err);
like($err, qr/repository "offsite" dropped from backup "midway"/,
	'dropped with an error naming it');
ok(defined s3_object('main/backups/midway.running'), 'its running marker is in offsite');
$s3 = s3rver_start(dir => $s3->{dir}, port => $s3->{port});
unlink($pause_end);
eval { $h->finish };
is($h->result(0), 4, 'S3 lost during the backup: exit 4') or diag($err);
my $mid = eval { decode_json($out) } // {};
is_deeply($mid->{failed_repositories}, ['offsite'], '--json: offsite failed');
ok(-f "$local/main/backups/midway/manifest.json", 'the backup is complete in local');
ok(!defined s3_object('main/backups/midway.running'),
	'S3 back before the end: the running marker is gone from offsite');
ok(!-e "$local/main/backups/midway.running", 'and from local');
unlike($err, qr/could not remove the running marker/, 'without a warning');
ok(!defined s3_object('main/backups/midway/manifest.json'), 'offsite has no manifest of it');
$r = run_pgark([ '--config', $config, 'copy', '--json' ]);
is($r->{rc}, 0, 'the catch-up once S3 is back') or diag($r->{stderr});
$c = eval { decode_json($r->{stdout}) } // {};
is_deeply([ map { "$_->{label}:$_->{from}:$_->{to}" } @{ $c->{backups_copied} // [] } ],
	['midway:local:offsite'], 'it copied "midway" to offsite');
is(s3_object('main/backups/midway/manifest.json'),
	slurp_bytes("$local/main/backups/midway/manifest.json"),
	'offsite\'s manifest of "midway" is byte-identical to local\'s');

# Local lost: offsite alone gives the same rows.
rename($local, "$local.away") or die "rename: $!";
restore_and_check('from offsite after the copy', $want, '--repo', 'offsite');

done_testing();

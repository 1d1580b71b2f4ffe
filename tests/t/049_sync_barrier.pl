# A backup's chunks are durable before its manifest (issue 25): the chunk directories
# are fsynced once each, at a barrier before manifest.json is written, and a failure
# there fails the backup with the directory named and no manifest.json left behind.
# The next backup, without the failure, completes and verifies.
use strict;
use warnings;

use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo";

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
$src->safe_psql('postgres',
	'CREATE TABLE t AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 20000) g');

my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $local }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
    backup: { chunk_size: 256KiB }
EOF
mkdir("$tmp/spool") or die "mkdir: $!";

sub manifests
{
	my @found;
	find(sub { push @found, $File::Find::name if $_ eq 'manifest.json' }, $local)
	  if -d $local;
	return scalar @found;
}

# The fsync of the chunk directories at the barrier fails (a test knob of the posix
# driver: every directory whose path starts with main/chunks/).
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--label', 'dir-fsync-fails' ],
	env => { PGARK_TEST_FAIL_DIR_FSYNC => 'main/chunks/' });
is($r->{rc}, 1, 'a failed directory fsync at the barrier fails the backup');
like(
	$r->{stderr},
	qr{could not fsync directory "\Q$local\E/main/chunks/[0-9a-f]{2}": Input/output error},
	'the error names the directory');
like(
	$r->{stderr},
	# At the barrier before the manifest, or earlier at the first other write of the
	# backup (a WAL segment it archives), which syncs what was deferred before it.
	qr/while making (the chunks stored in repository "local"|earlier writes) durable/,
	'and says what was being made durable');
ok(-d "$local/main/chunks", 'the chunks were stored');
is(manifests(), 0, 'no manifest.json was written');

$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--label', 'after-dir-fsync' ]);
is($r->{rc}, 0, 'the next backup completes') or diag($r->{stderr});
is(manifests(), 1, 'its manifest.json is there');
# The backup itself: no receiver archives the WAL between backups here, and the failed
# backup's WAL segment may not have been archived (verify of the whole repository
# would report that gap).
$r = run_pgark([ '--config', $config, 'verify', '--backup', 'after-dir-fsync' ]);
is($r->{rc}, 0, 'and it verifies') or diag($r->{stderr});

$src->stop;
done_testing();

# Configuration backups: the server's configuration outside the data directory (a
# Debian-like layout: hba_file and ident_file in an "etc" directory, an include_dir
# there) and pgark's own configuration (secrets redacted) kept with every backup and by
# backup --config-only; restore --config-only gives them back byte for byte at their
# original paths under --dest, a normal restore beside the data in
# pgark-restored-config/, a restore of the data from a configuration-only backup is
# refused, and a role that may not read a file gets a warning naming it.
use strict;
use warnings;

use File::Copy;
use File::Find;
use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

$ENV{PGARK_TEST_KDF_N} = 1024;
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $etc = "$tmp/etc/postgresql/15/main";

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
my $pgdata = $src->data_dir;
make_path("$etc/conf.d");
copy("$pgdata/pg_hba.conf", "$etc/pg_hba.conf") or die "copy: $!";
copy("$pgdata/pg_ident.conf", "$etc/pg_ident.conf") or die "copy: $!";
unlink("$pgdata/pg_hba.conf", "$pgdata/pg_ident.conf");
write_file("$etc/conf.d/01-memory.conf", "work_mem = '7MB'\n", 0644);
write_file("$etc/conf.d/02-logging.conf", "log_min_duration_statement = 250\n", 0644);
$src->append_conf('postgresql.conf', <<"EOF");
autovacuum = off
hba_file = '$etc/pg_hba.conf'
ident_file = '$etc/pg_ident.conf'
include_dir = '$etc/conf.d'
EOF
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }
is(sql('SHOW work_mem'), '7MB', 'the server reads the include_dir outside the data directory');
is(sql('SHOW hba_file'), "$etc/pg_hba.conf", 'and its hba_file there');

my $conninfo = "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres password=hunter2-secret";
sub config_for
{
	my ($conn, $path) = @_;
	return write_config(<<"EOF", $path);
spool: $tmp/spool
metrics_textfile: $tmp/prom
repos:
  local: { type: posix, path: $tmp/repo }
encryption:
  passphrase: "sekrit-pass-phrase"
clusters:
  main:
    conninfo: "$conn"
    create_slot: true
    repos: [local]
EOF
}
my $config = config_for($conninfo, "$tmp/pgark.yaml");
mkdir("$tmp/spool") or die;
mkdir("$tmp/prom") or die;

# The files as they are now: what the backups must give back.
my @files = ("$pgdata/postgresql.conf", "$etc/pg_hba.conf", "$etc/pg_ident.conf",
	"$etc/conf.d/01-memory.conf", "$etc/conf.d/02-logging.conf");
my %orig = map { $_ => slurp_file($_) } @files;

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'a backup') or diag($r->{stderr});
my $full = eval { decode_json($r->{stdout})->{label} } // '';
unlike($r->{stderr}, qr/configuration backup:/, 'it read every configuration file without a warning');

my $backup_prom = slurp_file("$tmp/prom/pgark_main_backup.prom");
# Labels are per second: the next one must differ.
sub label_now { my @t = gmtime(); return sprintf('%04d%02d%02dT%02d%02d%02dZ', $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0]) }
poll_until(sub { label_now() gt $full }, 5);

$r = run_pgark([ '--config', $config, 'backup', '--config-only', '--json' ]);
is($r->{rc}, 0, 'backup --config-only') or diag($r->{stderr});
my $cfgonly = eval { decode_json($r->{stdout}) } // {};
is($cfgonly->{kind}, 'config-only', 'it says it is configuration-only');
is($cfgonly->{files}, 6, 'five server files and pgark\'s configuration');
ok(!-d "$tmp/repo/main/backups/$cfgonly->{label}", 'no backup of the data under its label');
is(slurp_file("$tmp/prom/pgark_main_backup.prom"), $backup_prom,
	'its metrics do not pass for a backup of the data');
like(slurp_file("$tmp/prom/pgark_main_config_backup.prom"), qr/^pgark_config_backup_last_success_timestamp_seconds\{cluster="main"\} \d/m,
	'they are its own');

$r = run_pgark([ '--config', $config, 'info', '--json' ]);
my $json = $r->{stdout};
is_deeply([ $json =~ /"label":\s*"([^"]+)",\s*"kind":\s*"([^"]+)"/g ],
	[ $full, 'backup', $cfgonly->{label}, 'config-only' ],
	'info lists both configuration backups, each as what it is')
  or diag($json);
$r = run_pgark([ '--config', $config, 'info' ]);
like($r->{stdout}, qr/configuration backups: 2 \(1 config-only\), newest \Q$cfgonly->{label}\E \(config-only\)/,
	'info says so in its text too');

# A setting changes, and the hba file.
write_file("$etc/conf.d/01-memory.conf", "work_mem = '9MB'\n", 0644);
write_file("$etc/pg_hba.conf", $orig{"$etc/pg_hba.conf"} . "# changed\n", 0644);
$src->reload;

$r = run_pgark([ '--config', $config, 'restore', '--config-only', '--dest', "$tmp/out",
	'--backup', $cfgonly->{label} ]);
is($r->{rc}, 0, 'restore --config-only') or diag($r->{stderr});
like($r->{stdout}, qr/restored the configuration of backup "\Q$cfgonly->{label}\E" of cluster "main" in repository "local" into "\Q$tmp\E\/out": 6 files/,
	'it says what it restored from where');
for my $f (@files)
{
	is(slurp_file("$tmp/out$f"), $orig{$f}, "$f restored as it was when backed up");
}
my $own = slurp_file("$tmp/out$tmp/pgark.yaml");
like($own, qr/passphrase: <redacted>/, 'pgark\'s configuration is there, its passphrase redacted');
like($own, qr/password=<redacted>/, 'and the conninfo\'s password');
unlike($own, qr/sekrit|hunter2/, 'no secret in the configuration backup');
my @all;
find({ no_chdir => 1, wanted => sub { push @all, substr($_, length("$tmp/out")) if -f $_ } }, "$tmp/out");
is_deeply([ sort @all ], [ sort(@files, "$tmp/pgark.yaml") ], 'nothing else written under --dest');

$r = run_pgark([ '--config', $config, 'restore', '--config-only', '--dest', "$tmp/out-latest" ]);
is($r->{rc}, 0, 'restore --config-only without --backup') or diag($r->{stderr});
like($r->{stdout}, qr/backup "\Q$cfgonly->{label}\E"/, 'takes the newest');

my $node = PostgreSQL::Test::Cluster->new('restored');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir, '--backup', $cfgonly->{label} ]);
is($r->{rc}, 2, 'a restore of the data from a configuration-only backup is refused');
like($r->{stderr}, qr/backup "\Q$cfgonly->{label}\E" is a configuration-only backup: it holds no data directory to restore/,
	'saying why');
ok(!-e $node->data_dir . '/PG_VERSION', 'nothing was restored');

$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir, '--backup', $full ]);
is($r->{rc}, 0, 'a restore of the full backup') or diag($r->{stderr});
my $beside = $node->data_dir . '/pgark-restored-config';
is(slurp_file("$beside/02-pg_hba.conf"), $orig{"$etc/pg_hba.conf"},
	'its configuration beside the data, as it was, under a short name');
my $readme = slurp_file("$beside/README");
like($readme, qr/from backup "\Q$full\E" of cluster "main" in repository "local"/,
	'with a README saying where it came from');
like($readme, qr/^02-pg_hba\.conf\t\Q$etc\E\/pg_hba\.conf\t\(hba_file\)$/m, 'and the path each file had');
is(slurp_file("$etc/pg_hba.conf"), $orig{"$etc/pg_hba.conf"} . "# changed\n",
	'the live configuration was left alone');

# The restored server starts, and its own next backup carries the directory along
# (BASE_BACKUP's tar holds names of at most 99 bytes).
$node->append_conf('postgresql.conf', "port = @{[$node->port]}\n");
$node->start;
ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the restored server recovered and promoted');
my $yaml2 = slurp_file($config);
$yaml2 =~ s/port=\d+/port=@{[$node->port]}/;
$yaml2 =~ s{\Q$tmp/repo\E}{$tmp/repo2};
$yaml2 =~ s/create_slot: true/create_slot: false/;
my $config2 = write_config($yaml2, "$tmp/pgark2.yaml");
$r = run_pgark([ '--config', $config2, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'the restored server is backed up, pgark-restored-config and all') or diag($r->{stderr});
$node->stop;

# A role that may see the file names but not read the files: warnings naming each.
sql('CREATE ROLE bk LOGIN REPLICATION; GRANT pg_read_all_settings TO bk');
my $limited = config_for("$conninfo user=bk", "$tmp/limited.yaml");
$r = run_pgark([ '--config', $limited, 'backup', '--config-only' ]);
is($r->{rc}, 0, 'backup --config-only by a role that may not read the files still succeeds')
  or diag($r->{stderr});
like($r->{stderr}, qr/configuration backup: cannot read "\Q$etc\E\/pg_hba.conf" \(hba_file\) from the server: .*permission denied/,
	'a warning names the file it could not read');
like($r->{stdout}, qr/: 1 files into 1 repositories/, 'pgark\'s own configuration is kept anyway');

$src->stop;
done_testing();

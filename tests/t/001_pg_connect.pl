# The replication connection (src/pg) against a real server, through
# tests/tools/pg_probe: what IDENTIFY_SYSTEM, the version and the segment size report
# must equal what SQL says, simple commands return their rows, and each way a
# connection can fail gives its own clear error without ever showing the password.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $probe = tool_bin('pg_probe');

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->start;

my $host = $node->host;
my $port = $node->port;
my $conninfo = "host=$host port=$port";

sub probe
{
	my ($ci, @args) = @_;
	# No ~/.pgpass or PG* variables of the test user may help or hurt.
	return run_cmd([ $probe, $ci, @args ],
		env => { PGPASSFILE => '/nonexistent', PGPASSWORD => undef });
}

sub kv
{
	my ($text) = @_;
	return { map { /^(\w+)=(.*)$/ ? ($1 => $2) : () } split /\n/, $text };
}

sub sql
{
	return $node->safe_psql('postgres', $_[0]);
}

# --- what the server says about itself -------------------------------------------

sql('CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g');
my $flush_before = sql('SELECT pg_current_wal_flush_lsn()');
my $r = probe($conninfo);
is($r->{rc}, 0, 'probe connects over the socket');
is($r->{stderr}, '', 'and prints no error');
my $got = kv($r->{stdout});

is($got->{systemid}, sql('SELECT system_identifier FROM pg_control_system()'),
	'systemid equals pg_control_system().system_identifier');
is($got->{timeline}, sql('SELECT timeline_id FROM pg_control_checkpoint()'),
	'timeline equals the control file timeline');
is($got->{server_version}, sql('SHOW server_version_num'),
	'server version equals server_version_num');
is($got->{wal_segment_size},
	sql("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"),
	'segment size in bytes equals pg_settings');
is($got->{target}, "$host:$port", 'target names socket directory and port');
like($got->{xlogpos}, qr{^[0-9A-F]+/[0-9A-F]+$}, 'xlogpos is LSN text');
is( sql("SELECT '$flush_before'::pg_lsn <= '$got->{xlogpos}'::pg_lsn
	        AND '$got->{xlogpos}'::pg_lsn <= pg_current_wal_flush_lsn()"),
	't', 'xlogpos lies between the flush positions before and after');

# It is the live position, not a constant: new WAL moves it.
sql('INSERT INTO t SELECT g FROM generate_series(1, 1000) g');
sql('SELECT pg_switch_wal()');
my $later = kv(probe($conninfo)->{stdout});
is(sql("SELECT '$later->{xlogpos}'::pg_lsn > '$got->{xlogpos}'::pg_lsn"),
	't', 'xlogpos advances with new WAL');

# A postgresql:// URI works as well as keyword=value.
$r = probe("postgresql:///postgres?host=$host&port=$port");
is($r->{rc}, 0, 'URI conninfo connects');
is(kv($r->{stdout})->{systemid}, $got->{systemid}, 'URI reaches the same system');

# --- simple commands ---------------------------------------------------------------

$r = probe($conninfo, '-c', 'SHOW application_name');
is($r->{stdout}, "row 0: application_name=pg_probe\n",
	'application_name is the one pgark passes');
$r = probe("$conninfo application_name=other", '-c', 'SHOW application_name');
is($r->{stdout}, "row 0: application_name=pg_probe\n",
	'and it overrides one in the conninfo');
$r = probe("$conninfo replication=database dbname=postgres", '-c', 'SELECT 1');
is($r->{rc}, 1, 'replication=true is forced');
like($r->{stderr}, qr/cannot execute SQL commands in WAL sender for physical replication/,
	'so SQL is refused as on a physical walsender');

$r = probe($conninfo, '-c', 'READ_REPLICATION_SLOT nosuch');
is($r->{stdout}, "row 0: slot_type=NULL restart_lsn=NULL restart_tli=NULL\n",
	'unknown slot reads as one row of NULLs');

$r = probe($conninfo, '-c', 'CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL)');
is($r->{rc}, 0, 'slot created');
like($r->{stdout}, qr/^row 0: slot_name=s1 consistent_point=0\/0 /, 'slot row returned');
is(sql("SELECT slot_type FROM pg_replication_slots WHERE slot_name = 's1'"),
	'physical', 'slot exists on the server');

$r = probe($conninfo, '-c', 'CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL)');
is($r->{rc}, 1, 'creating it again fails');
like(
	$r->{stderr},
	qr/error\s+command "CREATE_REPLICATION_SLOT s1 PHYSICAL \(RESERVE_WAL\)" failed on server "\Q$host:$port\E": replication slot "s1" already exists/,
	'with the command, the server and the server\'s message');

$r = probe($conninfo, '-c', 'DROP_REPLICATION_SLOT s1');
is_deeply([ $r->{rc}, $r->{stdout} ], [ 0, "no rows\n" ], 'command without rows');
is(sql("SELECT count(*) FROM pg_replication_slots"), '0', 'slot dropped');

# --- failures ----------------------------------------------------------------------

my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
$r = probe("host=$host port=$dead_port");
is($r->{rc}, 1, 'nothing listening: exit 1');
like(
	$r->{stderr},
	qr/error\s+connection to server on socket "\Q$host\E\/\.s\.PGSQL\.$dead_port" failed: No such file or directory; Is the server running locally/,
	'names the socket and the reason, on one line');
is($r->{stdout}, '', 'and prints nothing on stdout');

sql('CREATE ROLE norepl LOGIN');
$r = probe("$conninfo user=norepl");
is($r->{rc}, 1, 'role without REPLICATION: exit 1');
like($r->{stderr},
	qr/must be superuser or replication role to start walsender/,
	'server reason shown');
like($r->{stderr}, qr/hint: grant the role replication: ALTER ROLE "norepl" REPLICATION/,
	'with the grant that fixes it');

# Password authentication over the socket: scram for one role, ahead of the
# harness's trust lines (the first matching line wins).
my $password = 'Corr3ct-Horse';
my $wrong = 'Wr0ng-Battery';
sql("CREATE ROLE pwuser LOGIN REPLICATION PASSWORD '$password'");
my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_text = slurp_file($hba);
open(my $fh, '>', $hba) or die "could not write $hba: $!";
print $fh "local replication pwuser scram-sha-256\n", $hba_text;
close($fh);
$node->reload;

$r = probe("$conninfo user=pwuser password=$password");
is($r->{rc}, 0, 'right password connects');
is(kv($r->{stdout})->{systemid}, $got->{systemid}, 'to the same system');

$r = probe("$conninfo user=pwuser password=$wrong");
is($r->{rc}, 1, 'wrong password: exit 1');
like($r->{stderr}, qr/password authentication failed for user "pwuser"/,
	'says password authentication failed');
unlike($r->{stderr} . $r->{stdout}, qr/\Q$wrong\E/, 'and never shows the password');

$r = probe("postgresql://pwuser:$wrong\@/postgres?host=$host&port=$port");
is($r->{rc}, 1, 'wrong password in a URI: exit 1');
like($r->{stderr}, qr/password authentication failed for user "pwuser"/,
	'same message');
unlike($r->{stderr} . $r->{stdout}, qr/\Q$wrong\E/, 'no password from the URI either');

$r = probe("$conninfo user=pwuser");
is($r->{rc}, 1, 'no password at all: exit 1');
like($r->{stderr}, qr/no password supplied/, 'says none was supplied');

# A conninfo libpq cannot parse is a configuration error (exit 2); libpq's message
# echoes part of the string, which must not carry the password out.
$r = probe("$conninfo password=$wrong bogus");
is($r->{rc}, 2, 'malformed conninfo: exit 2');
like($r->{stderr}, qr/invalid conninfo: missing "=" after "bogus"/,
	'names what is wrong');
$r = probe("postgresql://pwuser:$wrong%zz\@/postgres?host=$host");
is($r->{rc}, 2, 'bad percent-encoding in a URI: exit 2');
like($r->{stderr}, qr/invalid conninfo: invalid percent-encoded token: "\*+"/,
	'libpq\'s message with the password masked');
unlike($r->{stderr}, qr/\Q$wrong\E/, 'no trace of the password');

$node->stop;
done_testing();

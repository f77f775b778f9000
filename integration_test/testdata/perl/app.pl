#!/usr/bin/perl
# A persistent FastCGI application in the classic style: CGI::Fast for the
# requests, CGI::Session's file driver for the session (cookie CGISESSID),
# and a fixed set of pre-forked workers sharing one listening socket.
#
# Usage: app.pl SOCKET_PATH WORKERS SESSION_DIR
#
# It ignores SCRIPT_FILENAME and dispatches on SCRIPT_NAME:
#   /start.pl  new session with counter 0; prints the session ID
#   /incr.pl   reads the counter, works 50 ms, writes counter+1; prints it
#   /read.pl   prints the counter
# CGI::Session locks its file only while reading or writing it, not between
# the two, so concurrent /incr.pl requests of one session lose updates.
use strict;
use warnings;

use CGI::Fast;
use CGI::Session;
use FCGI;
use POSIX ();
use Time::HiRes ();

my ($socket_path, $workers, $session_dir, $mode) = @ARGV;
die "usage: $0 SOCKET_PATH WORKERS SESSION_DIR [weak-ids]\n" unless defined $session_dir;
# weak-ids reproduces the broken applications that handed two users one
# session: IDs made from rand() alone, seeded once before the fork, so every
# worker draws the same sequence of IDs.
my $weak_ids = ($mode // '') eq 'weak-ids';

# The socket is opened once, before forking, and every worker accepts on it:
# CGI::Fast uses the request object in $CGI::Fast::Ext_Request when it is
# set, so each worker's CGI::Fast->new accepts from the shared socket.
my $socket = FCGI::OpenSocket($socket_path, 64)
    or die "cannot listen on $socket_path: $!\n";
$CGI::Fast::Ext_Request = FCGI::Request(\*STDIN, \*STDOUT, \*STDERR, \%ENV, $socket);

my $session_args = { Directory => $session_dir };

sub start_page {
    my ($q) = @_;
    my $s;
    if ($weak_ids) {
        # Slow enough that concurrent starts spread over the workers.
        Time::HiRes::sleep(0.1);
        my $id = join '', map { sprintf '%08x', int rand 2**32 } 1 .. 4;
        $s = CGI::Session->new('driver:file;id:static', $id, $session_args);
    } else {
        $s = CGI::Session->new('driver:file', undef, $session_args);
    }
    $s or die CGI::Session->errstr;
    $s->param(n => 0);
    $s->flush;
    print $s->header(-type => 'text/plain'), $s->id, "\n";
}

sub incr_page {
    my ($q) = @_;
    my $s = CGI::Session->new('driver:file', $q, $session_args)
        or die CGI::Session->errstr;
    my $n = ($s->param('n') || 0) + 1;
    Time::HiRes::sleep(0.05);
    $s->param(n => $n);
    # Write before answering: the proxy counts the request as done when the
    # response ends, and an automatic flush in DESTROY may come later (or,
    # in a persistent process, never).
    $s->flush;
    print $q->header(-type => 'text/plain'), "$n\n";
}

sub read_page {
    my ($q) = @_;
    my $s = CGI::Session->load('driver:file', $q, $session_args)
        or die CGI::Session->errstr;
    my $n = $s->param('n') || 0;
    # load() updates the access time, so even a read writes the session;
    # do it before answering, like a writer.
    $s->flush;
    print $q->header(-type => 'text/plain'), "$n\n";
}

my %pages = (
    '/start.pl' => \&start_page,
    '/incr.pl'  => \&incr_page,
    '/read.pl'  => \&read_page,
);

sub serve {
    while (my $q = CGI::Fast->new) {
        my $page = $pages{ $ENV{SCRIPT_NAME} // '' };
        if ($page) {
            $page->($q);
        } else {
            print $q->header(-status => 404, -type => 'text/plain'),
                "no page for SCRIPT_NAME=", ($ENV{SCRIPT_NAME} // ''), "\n";
        }
    }
}

# The parent only supervises: on SIGTERM it stops the workers and waits for
# them, so stopping the parent's PID stops the whole app. The handler is in
# place before the first fork so that no worker can outlive an early SIGTERM.
my %children;
my $stopping = 0;
$SIG{TERM} = sub { $stopping = 1; kill 'TERM', keys %children };

srand(42) if $weak_ids;
for (1 .. $workers) {
    last if $stopping;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        $SIG{TERM} = 'DEFAULT';
        # Reseed: a pre-fork rand() state would give every worker the same
        # sequence, and CGI::Session's md5 IDs mix in rand().
        srand() unless $weak_ids;
        serve();
        POSIX::_exit(0);
    }
    $children{$pid} = 1;
}

while (%children) {
    my $pid = waitpid(-1, 0);
    if ($pid < 0) {
        next if $!{EINTR};
        last;
    }
    delete $children{$pid};
}
exit 0;

<?php
// A page that answers in parts and goes on working after its client has
// left: it reads the session counter, sends a first line, waits until the
// test has dropped the connection (it creates release-NAME, ?f=NAME), sends
// more lines, which Caddy can no longer deliver, works for ?ms= (default
// 300 ms), then writes counter+1 and notes "stream saved" in the event log
// (?e=NAME). A request of the same session let in before that reads the old
// counter, and one of the two increments is lost.
//
// ignore_user_abort keeps PHP from stopping at an output that nobody reads
// any more, so the page's work goes on as that of every page does while it
// is between outputs.
require __DIR__ . '/lib.php';

ignore_user_abort(true);
sq_incremental();
session_start();
$n = (int)($_SESSION['n'] ?? 0) + 1;
echo "started\n";
flush();
$release = sq_state_dir() . '/release-' . sq_name('f');
for ($deadline = time() + 120; !file_exists($release); usleep(10 * 1000)) {
    if (time() > $deadline) {
        exit("gave up waiting\n");
    }
}
for ($i = 1; $i <= 3; $i++) {
    echo "progress $i\n";
    flush();
}
usleep(sq_ms(300) * 1000);
$_SESSION['n'] = $n;
session_write_close();
sq_event('stream saved');
echo $n, "\n";

<?php
// A writer: reads the session counter, works for ?ms= (default 50 ms) and
// writes counter+1 back, printing the new value. Two of these running at
// once on one session read the same value and one increment is lost, unless
// something serializes them (the files handler's flock, or session_queue).
require __DIR__ . '/lib.php';

sq_event('incr started');
sq_track('writers', 1);
session_start();
$n = (int)($_SESSION['n'] ?? 0) + 1;
usleep(sq_ms(50) * 1000);
$_SESSION['n'] = $n;
session_write_close();
sq_track('writers', -1);
echo $n, "\n";

<?php
// Gives a logged-in session a new ID and deletes the old session at once,
// as frameworks do on a privilege change or on a timer (CodeIgniter's
// sess_time_to_update): requests still carrying the old ID find it gone.
require __DIR__ . '/lib.php';

session_start();
usleep(20000);
if (isset($_SESSION['user'])) {
    session_regenerate_id(true);
}
echo $_SESSION['user'] ?? 'anonymous', "\n";

set datafile separator ','
z(r, f) = r > 0 ? r : f
set format xy '%.0e'
set label 1 'a rate of 0 is drawn at 1/(2n)' at graph 0.02, graph 0.04
set logscale xy
set grid
set key top right
set terminal png size 900,650
set title 'FACE synthetic hard s=0.8, 100000 identities - DET (1:1, 2000 genuine, 1000000 impostor)'
set xlabel 'FMR'
set ylabel 'FNMR'
set output 'docs/accuracy/hard_s08_det.png'
plot 'docs/accuracy/hard_s08_det.csv' every ::1 using (z($2,5e-07)):(z($3,0.00025)) with lines lw 2 title 'FNMR vs FMR'
set title 'FACE synthetic hard s=0.8, 100000 identities - 1:N (gallery 100000, 2000 mated, 10000 non-mated)'
set xlabel 'FPIR'
set ylabel 'FNIR'
set output 'docs/accuracy/hard_s08_fnir_fpir.png'
plot 'docs/accuracy/hard_s08_fpir.csv' every ::1 using (z($2,5e-05)):(z($3,0.00025)) with lines lw 2 title 'rank 1', 'docs/accuracy/hard_s08_fpir.csv' every ::1 using (z($2,5e-05)):(z($4,0.00025)) with lines lw 2 dt 2 title 'rank 10'
unset output
set terminal svg size 900,650
set title 'FACE synthetic hard s=0.8, 100000 identities - DET (1:1, 2000 genuine, 1000000 impostor)'
set xlabel 'FMR'
set ylabel 'FNMR'
set output 'docs/accuracy/hard_s08_det.svg'
plot 'docs/accuracy/hard_s08_det.csv' every ::1 using (z($2,5e-07)):(z($3,0.00025)) with lines lw 2 title 'FNMR vs FMR'
set title 'FACE synthetic hard s=0.8, 100000 identities - 1:N (gallery 100000, 2000 mated, 10000 non-mated)'
set xlabel 'FPIR'
set ylabel 'FNIR'
set output 'docs/accuracy/hard_s08_fnir_fpir.svg'
plot 'docs/accuracy/hard_s08_fpir.csv' every ::1 using (z($2,5e-05)):(z($3,0.00025)) with lines lw 2 title 'rank 1', 'docs/accuracy/hard_s08_fpir.csv' every ::1 using (z($2,5e-05)):(z($4,0.00025)) with lines lw 2 dt 2 title 'rank 10'
unset output

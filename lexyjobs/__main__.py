from lexyjobs.cli import main

main()

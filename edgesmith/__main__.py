from edgesmith.cli import main

main()
